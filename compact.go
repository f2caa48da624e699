package activitystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/activitystore/activitystore/internal/codec"
)

// prefixArchive keys record the archive of a window: 'a' window -> meta.
const prefixArchive = 'a'

// archiveMetaVersion versions the value under an archive key.
const archiveMetaVersion = 1

// archive is one archive file: the records and index of one window that
// left pebble. The file is opened on first use.
type archive struct {
	window int64
	width  int64  // the store's segment width
	gen    uint64 // makes the file name unique; a sequence number
	n      int    // activities
	size   int64  // file bytes
	name   string // file name in the archive folder
	path   string

	mu      sync.Mutex
	f       *os.File
	ft      *archiveFooter
	refs    int
	dropped bool

	loadMu sync.Mutex // one index load at a time
}

func archiveName(w int64, gen uint64) string { return fmt.Sprintf("%016x-%d.arc", w, gen) }

var archiveNameRE = regexp.MustCompile(`^([0-9a-f]{16})-([0-9]+)\.arc(\.tmp)?$`)

func (a *archive) meta() []byte {
	b := []byte{archiveMetaVersion}
	b = binary.AppendUvarint(b, a.gen)
	b = binary.AppendUvarint(b, uint64(a.n))
	return binary.AppendUvarint(b, uint64(a.size))
}

func decodeArchiveMeta(w, width int64, v []byte, dir string) (*archive, error) {
	d := codec.Decoder{B: v}
	ver := d.Byte()
	a := &archive{window: w, width: width, gen: d.Uvarint()}
	n, size := d.Uvarint(), d.Uvarint()
	if d.Err != nil || ver != archiveMetaVersion || len(d.B) != 0 || n == 0 || n >= 1<<32 || size > 1<<50 {
		return nil, corruptf(fmt.Sprintf("archive record of window %d", w), "malformed")
	}
	a.n, a.size = int(n), int64(size)
	a.name = archiveName(w, a.gen)
	a.path = filepath.Join(dir, a.name)
	return a, nil
}

// acquire opens the file if needed and keeps it open until release.
func (a *archive) acquire() (*os.File, *archiveFooter, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dropped {
		return nil, nil, fmt.Errorf("activitystore: archive %s was removed", a.name)
	}
	if a.f == nil {
		f, err := os.Open(a.path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, archiveCorrupt(a.name, "file is missing")
			}
			return nil, nil, fmt.Errorf("activitystore: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("activitystore: %w", err)
		}
		ft, err := readFooter(f, st.Size(), a.name)
		if err == nil && (ft.window != a.window || ft.n != a.n || ft.width != a.width) {
			err = archiveCorrupt(a.name, "holds window %d of width %d with %d activities, expected window %d of width %d with %d",
				ft.window, ft.width, ft.n, a.window, a.width, a.n)
		}
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		a.f, a.ft = f, ft
	}
	a.refs++
	return a.f, a.ft, nil
}

func (a *archive) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refs--
	if a.dropped && a.refs == 0 && a.f != nil {
		a.f.Close()
		a.f = nil
	}
}

// drop marks the archive gone; its file closes once no reader holds it.
func (a *archive) drop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropped = true
	if a.refs == 0 && a.f != nil {
		a.f.Close()
		a.f = nil
	}
}

// cacheKey names a cached part of an archive: its index (blk -1) or a block.
type cacheKey struct {
	a   *archive
	blk int
}

// archiveIndex returns the loaded index of a, from the cache or the file.
func (s *Store) archiveIndex(a *archive) (*arcIndex, error) {
	if v, ok := s.cache.Get(cacheKey{a, -1}); ok {
		return v.(*arcIndex), nil
	}
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if v, ok := s.cache.Get(cacheKey{a, -1}); ok {
		return v.(*arcIndex), nil
	}
	f, ft, err := a.acquire()
	if err != nil {
		return nil, err
	}
	defer a.release()
	_, _, dec := zstdCodecs()
	raw, err := readSection(f, ft.index, dec, a.name, "index")
	if err != nil {
		return nil, err
	}
	ix, err := decodeIndex(raw, ft, &s.dicts, a.name)
	if err != nil {
		return nil, err
	}
	s.cache.Add(cacheKey{a, -1}, ix, ix.size)
	return ix, nil
}

// archiveBlock returns block i of a, decoded, through the cache.
func (s *Store) archiveBlock(a *archive, ix *arcIndex, i int) (*block, error) {
	return s.loadBlock(a, ix, i, true)
}

// loadBlock returns block i of a, from the cache if it is there; cache says
// whether to keep it there once read.
func (s *Store) loadBlock(a *archive, ix *arcIndex, i int, cache bool) (*block, error) {
	if v, ok := s.cache.Get(cacheKey{a, i}); ok {
		return v.(*block), nil
	}
	f, ft, err := a.acquire()
	if err != nil {
		return nil, err
	}
	defer a.release()
	if i < 0 || i >= len(ft.blocks) {
		return nil, archiveCorrupt(a.name, "no block %d", i)
	}
	_, dec, _ := zstdCodecs()
	what := "block " + strconv.Itoa(i)
	raw, err := readSection(f, ft.blocks[i], dec, a.name, what)
	if err != nil {
		return nil, err
	}
	b, err := decodeBlock(raw, ft.blocks[i].count)
	if err != nil {
		return nil, archiveCorrupt(a.name, "%s: %v", what, err)
	}
	if cache {
		s.cache.Add(cacheKey{a, i}, b, b.size())
	}
	return b, nil
}

// fetchArchived fills out with the activities of ids, all in archive a.
func (s *Store) fetchArchived(a *archive, ids []ID, out []Activity) error {
	ix, err := s.archiveIndex(a)
	if err != nil {
		return err
	}
	_, ft, err := a.acquire()
	if err != nil {
		return err
	}
	a.release()
	size := 0
	type loc struct{ blk, j, o int }
	locs := make([]loc, len(ids))
	var blocks []*block
	for k, id := range ids {
		o := ix.seg.find(id)
		if o < 0 {
			return &CorruptionError{Where: "archive " + a.name, Err: fmt.Errorf("activity %s is indexed but missing", id)}
		}
		p := ft.n - 1 - o
		i := searchBlock(ft.blocks, p)
		b, err := s.archiveBlock(a, ix, i)
		if err != nil {
			return err
		}
		j := p - ft.blocks[i].first
		locs[k] = loc{len(blocks), j, o}
		blocks = append(blocks, b)
		size += int(b.off[2*j+2] - b.off[2*j])
	}
	arena := make([]byte, 0, size)
	for k := range ids {
		b, j, ord := blocks[locs[k].blk], locs[k].j, locs[k].o
		start := len(arena)
		arena = append(arena, b.buf[b.off[2*j]:b.off[2*j+2]]...)
		rec := arena[start:len(arena):len(arena)]
		mid := int(b.off[2*j+1] - b.off[2*j])
		ix.fill(&out[k], ord, rec[:mid], rec[mid:])
	}
	return nil
}

// searchBlock returns the block holding position p (0 is the newest).
func searchBlock(blocks []section, p int) int {
	lo, hi := 0, len(blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if blocks[m].first+blocks[m].count <= p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// compactHook, when set by tests, is called at each step of moving a
// segment into an archive.
var compactHook func(step string)

func hook(step string) {
	if compactHook != nil {
		compactHook(step)
	}
}

// Compact archives every segment whose window ended ColdAfter ago and, when RetainFor is set, deletes what is older than
// RetainFor. Late arrivals for an archived window are merged into a new
// archive of that window. It is safe to run while appends and queries go on;
// one Compact runs at a time. A window that fails (for instance because its
// earlier archive is corrupt) stays as it is and its error is returned, joined
// with the others', after the remaining windows are done.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.compact(ctx)
}

func (s *Store) compact(ctx context.Context) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	now := s.opts.Now()
	if s.opts.RetainFor > 0 {
		if err := s.dropBefore(ctx, now.Add(-s.opts.RetainFor)); err != nil {
			return err
		}
	}
	cold := now.Add(-s.opts.ColdAfter).UnixNano()
	var errs []error
	for _, seg := range s.segments() {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if (seg.window+1)*s.width > cold || (seg.window+1)*s.width < 0 {
			continue
		}
		// A window that cannot be archived (say, its earlier archive is
		// corrupt) does not hold up the others.
		if err := s.archiveWindow(ctx, seg.window); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// archiveWindow moves the segment of window w, merged with the window's
// earlier archive if any, into a new archive file. It takes a snapshot while
// no append is in flight, so the snapshot's records of the window are
// exactly the segment's; if the segment changes before the move is recorded
// (an append, a renumber or a seal replaced it), it leaves the window for the
// next Compact. Sealing first would be wasted: the archive replaces the
// sealed index.
func (s *Store) archiveWindow(ctx context.Context, w int64) error {
	s.sealMu.Lock()
	s.mu.RLock()
	seg, old := s.segs[w], s.archives[w]
	s.mu.RUnlock()
	if seg == nil {
		s.sealMu.Unlock()
		return nil
	}
	seg.mu.RLock()
	n0 := seg.len()
	seg.mu.RUnlock()
	if n0 == 0 {
		s.sealMu.Unlock()
		return nil
	}
	snap := s.db.NewSnapshot()
	s.sealMu.Unlock()
	defer snap.Close()

	total := n0
	if old != nil {
		total += old.n
	}
	gen, err := s.allocSeq(1)
	if err != nil {
		return err
	}
	name := archiveName(w, gen)
	final := filepath.Join(s.archDir, name)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("activitystore: %w", err)
	}
	size, err := s.writeArchive(ctx, f, name, w, total, snap, old)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	hook("written")
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("activitystore: %w", err)
	}
	hook("renamed")
	if err := syncDir(s.archDir); err != nil {
		os.Remove(final)
		return err
	}
	hook("dir-synced")

	a := &archive{window: w, width: s.width, gen: gen, n: total, size: size, name: name, path: final}
	s.swapMu.Lock()
	s.sealMu.Lock()
	s.mu.RLock()
	same := s.segs[w] == seg && s.archives[w] == old
	s.mu.RUnlock()
	seg.mu.RLock()
	same = same && seg.len() == n0
	seg.mu.RUnlock()
	if !same {
		s.sealMu.Unlock()
		s.swapMu.Unlock()
		os.Remove(final)
		return nil
	}
	lo, hi := s.windowIDs(w)
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(windowKey(prefixArchive, w), a.meta(), nil)
	b.DeleteRange(recordKey(nil, hi), recordKey(nil, lo), nil)
	b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
	b.Delete(windowKey(prefixDirty, w), nil)
	err = b.Commit(pebble.Sync)
	if err == nil {
		s.mu.Lock()
		delete(s.segs, w)
		s.archives[w] = a
		s.reorder()
		s.mu.Unlock()
	}
	s.sealMu.Unlock()
	s.swapMu.Unlock()
	if err != nil {
		os.Remove(final)
		return fmt.Errorf("activitystore: cannot record archive %s: %w", name, err)
	}
	hook("committed")
	s.archived.Add(int64(n0))
	if old != nil {
		s.removeArchive(old)
	}
	hook("removed")
	return nil
}

// writeArchive writes the n activities of window w, from the snapshot's
// records merged with the old archive's, newest first, and returns the file
// size.
func (s *Store) writeArchive(ctx context.Context, f *os.File, name string, w int64, n int, snap *pebble.Snapshot, old *archive) (int64, error) {
	aw, err := newArchiveWriter(f, name, w, s.width, n)
	if err != nil {
		return 0, err
	}
	lo, hi := s.windowIDs(w)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	it.First()
	// The old archive, read block by block, newest first.
	var ix *arcIndex
	var oldBlocks []section
	if old != nil {
		if ix, err = s.archiveIndex(old); err != nil {
			return 0, err
		}
		_, ft, err := old.acquire()
		if err != nil {
			return 0, err
		}
		old.release()
		oldBlocks = ft.blocks
	}
	var cur *block
	bi, bj, pos := 0, 0, 0
	nextOld := func(a *Activity) (bool, error) {
		if old == nil || pos >= old.n {
			return false, nil
		}
		for cur == nil || bj >= oldBlocks[bi].count {
			if cur != nil {
				bi, bj = bi+1, 0
			}
			// A one-off pass: do not let it evict what queries use.
			c, err := s.loadBlock(old, ix, bi, false)
			if err != nil {
				return false, err
			}
			cur = c
		}
		ix.fill(a, old.n-1-pos, cur.buf[cur.off[2*bj]:cur.off[2*bj+1]], cur.buf[cur.off[2*bj+1]:cur.off[2*bj+2]])
		bj++
		pos++
		return true, nil
	}
	var ha, oa Activity
	haveH, haveO := false, false
	nextHot := func() error {
		haveH = false
		if !it.Valid() {
			return it.Error()
		}
		id, ok := keyID(it.Key())
		if !ok || !id.valid() {
			return corruptf(fmt.Sprintf("record key %x", it.Key()), "not an activity ID")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := decodeRecord(id, v, &ha); err != nil {
			return corruptf("record "+id.String(), "%v", err)
		}
		haveH = true
		return nil
	}
	if err := nextHot(); err != nil {
		return 0, err
	}
	if haveO, err = nextOld(&oa); err != nil {
		return 0, err
	}
	for k := 0; haveH || haveO; k++ {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if haveH && (!haveO || ha.ID.Compare(oa.ID) > 0) {
			if err := aw.add(&ha); err != nil {
				return 0, err
			}
			it.Next()
			if err := nextHot(); err != nil {
				return 0, err
			}
		} else {
			if err := aw.add(&oa); err != nil {
				return 0, err
			}
			if haveO, err = nextOld(&oa); err != nil {
				return 0, err
			}
		}
	}
	if err := aw.finish(); err != nil {
		return 0, err
	}
	return aw.off, nil
}

// removeArchive forgets a replaced or dropped archive and deletes its file.
func (s *Store) removeArchive(a *archive) {
	a.drop()
	s.cache.RemoveIf(func(k cacheKey) bool { return k.a == a })
	if err := os.Remove(a.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.opts.Logger.Errorf("activitystore: cannot remove %s: %v", a.path, err)
	}
}

// DropBefore deletes every segment and archive whose whole window lies
// before t. A window that straddles t is kept whole, so nothing at or after t
// is ever deleted and some activities before t may remain until their window
// is wholly older than t. Deleted activities disappear from every query at
// once.
func (s *Store) DropBefore(ctx context.Context, t time.Time) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	return s.dropBefore(ctx, t)
}

func (s *Store) dropBefore(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	end := clampNS(t)
	s.swapMu.Lock()
	s.sealMu.Lock()
	var segs []int64
	var arcs []*archive
	s.mu.RLock()
	for w := range s.segs {
		if (w+1)*s.width <= end {
			segs = append(segs, w)
		}
	}
	for w, a := range s.archives {
		if (w+1)*s.width <= end {
			arcs = append(arcs, a)
		}
	}
	s.mu.RUnlock()
	if len(segs) == 0 && len(arcs) == 0 {
		s.sealMu.Unlock()
		s.swapMu.Unlock()
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, w := range segs {
		lo, hi := s.windowIDs(w)
		b.DeleteRange(recordKey(nil, hi), recordKey(nil, lo), nil)
		b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
		b.Delete(windowKey(prefixDirty, w), nil)
	}
	for _, a := range arcs {
		b.Delete(windowKey(prefixArchive, a.window), nil)
	}
	err := b.Commit(pebble.Sync)
	if err == nil {
		s.mu.Lock()
		for _, w := range segs {
			delete(s.segs, w)
		}
		for _, a := range arcs {
			delete(s.archives, a.window)
		}
		s.reorder()
		s.mu.Unlock()
	}
	s.sealMu.Unlock()
	s.swapMu.Unlock()
	if err != nil {
		return fmt.Errorf("activitystore: cannot drop windows before %s: %w", t.Format(time.RFC3339), err)
	}
	for _, a := range arcs {
		s.removeArchive(a)
	}
	return nil
}

// loadArchives reads the archive records and removes leftovers of
// interrupted compactions: temporary files and archive files no record
// refers to.
func (s *Store) loadArchives() error {
	if err := os.MkdirAll(s.archDir, 0o755); err != nil {
		return fmt.Errorf("activitystore: cannot create %s: %w", s.archDir, err)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixArchive}, UpperBound: []byte{prefixArchive + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 9 {
			continue
		}
		w := int64(binary.BigEndian.Uint64(k[1:]))
		if !s.validWindow(w) {
			s.opts.Logger.Errorf("activitystore: ignoring archive record of impossible window %d", w)
			continue
		}
		a, err := decodeArchiveMeta(w, s.width, it.Value(), s.archDir)
		if err != nil {
			it.Close()
			return err
		}
		s.archives[w] = a
	}
	if err := it.Close(); err != nil {
		return err
	}
	ents, err := os.ReadDir(s.archDir)
	if err != nil {
		return fmt.Errorf("activitystore: %w", err)
	}
	for _, e := range ents {
		m := archiveNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		w, _ := strconv.ParseUint(m[1], 16, 64)
		if a := s.archives[int64(w)]; a != nil && a.name == e.Name() {
			continue
		}
		if err := os.Remove(filepath.Join(s.archDir, e.Name())); err != nil {
			return fmt.Errorf("activitystore: cannot remove leftover %s: %w", e.Name(), err)
		}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("activitystore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("activitystore: cannot sync %s: %w", dir, err)
	}
	return nil
}

// verifyArchive reads every part of a: checksums, the index (every ordinal
// has exactly one value per field) and every block.
func (s *Store) verifyArchive(a *archive, report func(string, ...any)) {
	f, ft, err := a.acquire()
	if err != nil {
		report("%v", err)
		return
	}
	defer a.release()
	_, _, idec := zstdCodecs()
	raw, err := readSection(f, ft.index, idec, a.name, "index")
	if err != nil {
		report("%v", err)
		return
	}
	var scratch [numFields]dict
	ix, err := decodeIndex(raw, ft, &scratch, a.name)
	if err != nil {
		report("%v", err)
		return
	}
	_, bdec, _ := zstdCodecs()
	for i, bs := range ft.blocks {
		what := "block " + strconv.Itoa(i)
		raw, err := readSection(f, bs, bdec, a.name, what)
		if err != nil {
			report("%v", err)
			continue
		}
		b, err := decodeBlock(raw, bs.count)
		if err != nil {
			report("%v", archiveCorrupt(a.name, "%s: %v", what, err))
			continue
		}
		for j := range bs.count {
			if d := b.buf[b.off[2*j+1]:b.off[2*j+2]]; len(d) > 0 && !isJSONObject(d) {
				report("archive %s: %s: record %d has details that are not a JSON object", a.name, what, j)
			}
		}
	}
	// No activity may live both here and in the window's hot segment.
	s.mu.RLock()
	hot := s.segs[a.window]
	s.mu.RUnlock()
	if hot != nil {
		hot.mu.RLock()
		for _, id := range hot.ids {
			if ix.seg.find(id) >= 0 {
				report("archive %s: activity %s is also in the hot segment", a.name, id)
			}
		}
		hot.mu.RUnlock()
	}
}
