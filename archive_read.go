package activitystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
	"github.com/activitystore/activitystore/internal/codec"
)

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
	name   string // file name in the archive tier
	t      tier

	mu      sync.Mutex
	f       tierObject
	ft      *arcfmt.Footer
	refs    int
	dropped bool

	loadMu sync.Mutex // one index load at a time
	sl     *sealedSeg // format 3: the window's descriptor, once read
}

func archiveName(w int64, gen uint64) string { return fmt.Sprintf("%016x-%d.arc", w, gen) }

var archiveNameRE = regexp.MustCompile(`^([0-9a-f]{16})-([0-9]+)\.arc(\.tmp)?$`)

func (a *archive) meta() []byte {
	b := []byte{archiveMetaVersion}
	b = binary.AppendUvarint(b, a.gen)
	b = binary.AppendUvarint(b, uint64(a.n))
	return binary.AppendUvarint(b, uint64(a.size))
}

func decodeArchiveMeta(w, width int64, v []byte, t tier) (*archive, error) {
	d := codec.Decoder{B: v}
	ver := d.Byte()
	a := &archive{window: w, width: width, gen: d.Uvarint()}
	n, size := d.Uvarint(), d.Uvarint()
	if d.Err != nil || ver != archiveMetaVersion || len(d.B) != 0 || n == 0 || n >= 1<<32 || size > 1<<50 {
		return nil, corruptf(fmt.Sprintf("archive record of window %d", w), "malformed")
	}
	a.n, a.size = int(n), int64(size)
	a.name = archiveName(w, a.gen)
	a.t = t
	return a, nil
}

// where names the archive's file or object in messages.
func (a *archive) where() string { return a.t.where(a.name) }

// acquire opens the file if needed and keeps it open until release. Reads
// through the returned ReaderAt are bounded by ctx.
func (a *archive) acquire(ctx context.Context) (io.ReaderAt, *arcfmt.Footer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dropped {
		return nil, nil, fmt.Errorf("activitystore: archive %s was removed", a.where())
	}
	if a.f == nil {
		f, ft, err := openArchive(ctx, a.t, a.name)
		if err != nil {
			return nil, nil, err
		}
		if err := a.check(ft); err != nil {
			f.close()
			return nil, nil, err
		}
		a.f, a.ft = f, ft
	}
	a.refs++
	return ctxReaderAt{ctx, a.f}, a.ft, nil
}

// openArchive opens archive name of tier t and reads its footer. A missing
// file is corruption that is also os.ErrNotExist.
func openArchive(ctx context.Context, t tier, name string) (tierObject, *arcfmt.Footer, error) {
	f, err := t.open(ctx, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, missing(t.where(name), err)
		}
		return nil, nil, fmt.Errorf("activitystore: cannot open archive %s: %w", t.where(name), err)
	}
	ft, err := arcfmt.ReadFooter(ctxReaderAt{ctx, f}, f.size())
	if err != nil {
		f.close()
		return nil, nil, archiveErr(t.where(name), err)
	}
	return f, ft, nil
}

// check reports a footer that is not of a's window, width and count.
func (a *archive) check(ft *arcfmt.Footer) error {
	if ft.Window != a.window || ft.N != a.n || ft.Width != a.width {
		return archiveCorrupt(a.where(), "holds window %d of width %d with %d activities, expected window %d of width %d with %d",
			ft.Window, ft.Width, ft.N, a.window, a.width, a.n)
	}
	return nil
}

// footer returns a's footer, opening the file if needed.
func (a *archive) footer(ctx context.Context) (*arcfmt.Footer, error) {
	_, ft, err := a.acquire(ctx)
	if err != nil {
		return nil, err
	}
	a.release()
	return ft, nil
}

// readArchive runs read on a's file and footer, with reads bounded by ctx,
// and names a in its errors.
func readArchive[T any](ctx context.Context, a *archive, read func(f io.ReaderAt, ft *arcfmt.Footer) (T, error)) (T, error) {
	var zero T
	f, ft, err := a.acquire(ctx)
	if err != nil {
		return zero, err
	}
	defer a.release()
	v, err := read(f, ft)
	if err != nil {
		return zero, archiveErr(a.where(), err)
	}
	return v, nil
}

func (a *archive) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refs--
	if a.dropped && a.refs == 0 && a.f != nil {
		a.f.close()
		a.f = nil
	}
}

// drop marks the archive gone; its file closes once no reader holds it.
func (a *archive) drop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropped = true
	if a.refs == 0 && a.f != nil {
		a.f.close()
		a.f = nil
	}
}

// archiveIndex returns the loaded index of a, from the cache or the file.
func (s *Store) archiveIndex(ctx context.Context, a *archive) (*arcIndex, error) {
	if v, ok := s.cache.Get(cacheKey{a: a, i: -1}); ok {
		return v.(*arcIndex), nil
	}
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if v, ok := s.cache.Get(cacheKey{a: a, i: -1}); ok {
		return v.(*arcIndex), nil
	}
	f, ft, err := a.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer a.release()
	ix, err := loadIndex(f, ft, &s.dicts, a.where())
	if err != nil {
		return nil, err
	}
	s.cache.Add(cacheKey{a: a, i: -1}, ix, ix.size)
	return ix, nil
}

// archiveBlock returns block i of a, decoded, through the cache.
func (s *Store) archiveBlock(ctx context.Context, a *archive, i int) (*arcfmt.Block, error) {
	return s.loadBlock(ctx, a, i, true)
}

// loadBlock returns block i of a, from the cache if it is there; cache says
// whether to keep it there once read.
func (s *Store) loadBlock(ctx context.Context, a *archive, i int, cache bool) (*arcfmt.Block, error) {
	return s.readBlock(ctx, a, cacheKey{a: a, i: i}, cache, (*arcfmt.Footer).ReadBlock)
}

// copyBlock returns copy block i of a, through the cache.
func (s *Store) copyBlock(ctx context.Context, a *archive, i int) (*arcfmt.Block, error) {
	return s.readBlock(ctx, a, cacheKey{a: a, i: i, cp: true}, true, (*arcfmt.Footer).ReadCopyBlock)
}

// readBlock returns the block of a that read reads, from the cache under
// key if it is there; cache says whether to keep it there once read.
func (s *Store) readBlock(ctx context.Context, a *archive, key cacheKey, cache bool, read func(*arcfmt.Footer, io.ReaderAt, int) (*arcfmt.Block, error)) (*arcfmt.Block, error) {
	if v, ok := s.cache.Get(key); ok {
		return v.(*arcfmt.Block), nil
	}
	b, err := readArchive(ctx, a, func(f io.ReaderAt, ft *arcfmt.Footer) (*arcfmt.Block, error) { return read(ft, f, key.i) })
	if err != nil {
		return nil, err
	}
	if cache {
		s.cache.Add(key, b, b.Size())
	}
	return b, nil
}

// arcRow is where the record of one activity of an archive is: its
// ordinal, its block, and the position of its copy in the copy blocks (-1:
// none).
type arcRow struct{ ord, at, cp int }

// fetchArchived fills out with the activities of ids, all in archive a:
// those the record cache holds from it, the others from the archive, which
// keep adds to the cache.
func (s *Store) fetchArchived(ctx context.Context, a *archive, ids []ID, out []Activity, keep bool) error {
	if s.records == nil {
		return s.readArchived(ctx, a, ids, out)
	}
	var buf recordBuf
	buf.init(len(ids))
	// The positions of the activities to read from the archive.
	at := s.records.take(len(ids), func(k int) ID { return ids[k] }, &buf, nil)
	for k, j := 0, 0; k < len(ids); k++ {
		if j < len(at) && at[j] == k {
			j++
			continue
		}
		if err := decodeRecord(ids[k], buf.get(k), &out[k]); err != nil {
			return &CorruptionError{Where: "record " + ids[k].String(), Err: err}
		}
	}
	switch len(at) {
	case 0:
		return nil
	case len(ids):
		if err := s.readArchived(ctx, a, ids, out); err != nil {
			return err
		}
	default:
		sub := make([]ID, len(at))
		for j, k := range at {
			sub[j] = ids[k]
		}
		subOut := make([]Activity, len(at))
		if err := s.readArchived(ctx, a, sub, subOut); err != nil {
			return err
		}
		for j, k := range at {
			out[k] = subOut[j]
		}
	}
	if keep {
		var enc []byte
		for _, k := range at {
			enc = appendRecord(enc[:0], &out[k])
			s.records.add(ids[k], enc)
		}
	}
	return nil
}

// readArchived fills out with the activities of ids, all in archive a, read
// from its blocks.
func (s *Store) readArchived(ctx context.Context, a *archive, ids []ID, out []Activity) error {
	ft, err := a.footer(ctx)
	if err != nil {
		return err
	}
	var rows []arcRow
	var fill func(k int, api, det []byte)
	sl, err := s.arcView(ctx, a)
	if err != nil {
		return err
	}
	if sl != nil {
		if rows, fill, err = s.arcRows(sl, ft, ids, out); err != nil {
			return err
		}
	} else {
		ix, err := s.archiveIndex(ctx, a)
		if err != nil {
			return err
		}
		rows = make([]arcRow, len(ids))
		for k, id := range ids {
			o := ix.seg.find(id)
			if o < 0 {
				return &CorruptionError{Where: "archive " + a.where(), Err: fmt.Errorf("activity %s is indexed but missing", id)}
			}
			rows[k] = arcRow{ord: o, at: ft.BlockAt(ft.N - 1 - o), cp: -1}
			if p, ok := ix.copyOf(o); ok {
				rows[k].cp = p
			}
		}
		fill = func(k int, api, det []byte) { ix.fill(&out[k], rows[k].ord, api, det) }
	}
	copies := s.useCopies(a, ft, rows)
	size := 0
	type loc struct{ blk, j int }
	locs := make([]loc, len(ids))
	var blocks []*arcfmt.Block
	for k, r := range rows {
		var b *arcfmt.Block
		var j int
		if r.cp >= 0 && copies {
			// A user with few activities here: its copies, in one small
			// block, instead of a large block per record.
			i := ft.CopyBlockAt(r.cp)
			if b, err = s.copyBlock(ctx, a, i); err != nil {
				return err
			}
			j = r.cp - ft.Copies[i].First
		} else {
			if b, err = s.archiveBlock(ctx, a, r.at); err != nil {
				return err
			}
			j = ft.N - 1 - r.ord - ft.Blocks[r.at].First
		}
		locs[k] = loc{len(blocks), j}
		blocks = append(blocks, b)
		api, det := b.Record(j)
		size += len(api) + len(det)
	}
	arena := make([]byte, 0, size)
	for k := range ids {
		b, j := blocks[locs[k].blk], locs[k].j
		api, det := b.Record(j)
		start := len(arena)
		arena = append(arena, api...)
		arena = append(arena, det...)
		rec := arena[start:len(arena):len(arena)]
		fill(k, rec[:len(api)], rec[len(api):])
	}
	return nil
}

// useCopies reports whether reading the records of rows of a from the copy
// blocks, where their users have copies, decompresses fewer bytes than
// reading them all from the blocks, counting only what the cache does not
// hold: a light user's page reads one small copy block per archive instead
// of a large block, while a page of one type in one day, whose records lie
// together in a block or two but belong to many users, keeps reading those.
func (s *Store) useCopies(a *archive, ft *arcfmt.Footer, rows []arcRow) bool {
	if len(ft.Copies) == 0 {
		return false
	}
	var blocks, copyBlocks, rest []int // uncached: all blocks; copy blocks, and the blocks of the others
	add := func(list *[]int, i int) {
		if !slices.Contains(*list, i) {
			*list = append(*list, i)
		}
	}
	// The blocks first: most pages find theirs cached, and stop there.
	prev := -1
	for _, r := range rows {
		if r.at != prev {
			prev = r.at
			if !s.cache.Contains(cacheKey{a: a, i: r.at}) {
				add(&blocks, r.at)
			}
		}
	}
	if len(blocks) == 0 {
		return false
	}
	for _, r := range rows {
		missing := slices.Contains(blocks, r.at)
		if r.cp >= 0 {
			if c := ft.CopyBlockAt(r.cp); !s.cache.Contains(cacheKey{a: a, i: c, cp: true}) {
				add(&copyBlocks, c)
			}
		} else if missing {
			add(&rest, r.at)
		}
	}
	raw := func(secs []arcfmt.Section, list []int) (n uint64) {
		for _, i := range list {
			n += secs[i].RLen
		}
		return n
	}
	return raw(ft.Copies, copyBlocks)+raw(ft.Blocks, rest) < raw(ft.Blocks, blocks)
}

// removeArchive forgets a replaced or dropped archive and deletes its file.
func (s *Store) removeArchive(a *archive) {
	a.drop()
	s.cache.RemoveIf(func(k cacheKey) bool { return k.a == a || (k.sl != nil && k.sl.arc == a) })
	s.removeObject(a.name)
}

// loadArchives reads the archive records and removes leftovers of
// interrupted compactions: temporary and staging files, and archive files
// or objects no record refers to.
func (s *Store) loadArchives(ctx context.Context) error {
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
		a, err := decodeArchiveMeta(w, s.width, it.Value(), s.tier)
		if err != nil {
			it.Close()
			return err
		}
		s.archives[w] = a
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := s.opts.FS.RemoveAll(s.stageDir()); err != nil {
		return fmt.Errorf("activitystore: cannot remove %s: %w", s.stageDir(), err)
	}
	return s.removeOrphans(ctx)
}

// removeOrphans deletes the archive-named files or objects of the tier
// that no archive record refers to: what an interrupted or failed
// compaction left. The caller holds s.compactMu, or is Open.
func (s *Store) removeOrphans(ctx context.Context) error {
	names, err := s.tier.list(ctx)
	if err != nil {
		return err
	}
	s.mu.RLock()
	var orphans []string
	for _, name := range names {
		m := archiveNameRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		w, _ := strconv.ParseUint(m[1], 16, 64)
		if a := s.archives[int64(w)]; a == nil || a.name != name {
			orphans = append(orphans, name)
		}
	}
	s.mu.RUnlock()
	for _, name := range orphans {
		if err := s.tier.remove(ctx, name); err != nil {
			return fmt.Errorf("activitystore: cannot remove leftover %s: %w", s.tier.where(name), err)
		}
	}
	return nil
}

// stageDir is the folder where archives bound for a bucket are written
// before their upload.
func (s *Store) stageDir() string { return filepath.Join(s.dir, "upload") }

// verifyArchive reads every part of a: checksums, the index (every ordinal
// has exactly one value per field) and every block.
func (s *Store) verifyArchive(ctx context.Context, a *archive, report func(string, ...any)) {
	switch size, err := a.t.stat(ctx, a.name); {
	case errors.Is(err, os.ErrNotExist):
		report("%v", missing(a.where(), err))
		return
	case err != nil:
		report("archive %s: %v", a.where(), err)
		return
	case size != a.size:
		report("%v", archiveCorrupt(a.where(), "holds %d bytes, expected %d", size, a.size))
		return
	}
	// Read the file itself, not the caches' copies of it.
	o, ft, err := openArchive(ctx, uncached(a.t), a.name)
	if err != nil {
		report("%v", err)
		return
	}
	defer o.close()
	if err := a.check(ft); err != nil {
		report("%v", err)
		return
	}
	f := ctxReaderAt{ctx, o}
	seed := maphash.MakeSeed()
	var scratch [numFields]dict
	ix, err := loadIndex(f, ft, &scratch, a.where())
	if err != nil {
		report("%v", err)
		return
	}
	// The copy blocks, one at a time: each copy's row is checked here and
	// a hash of its record kept, to compare with the record itself below.
	var sums []uint64 // by copy position
	if nc := ft.CopyCount(); nc > 0 && ix.copyAt != nil {
		ords := make([]int32, nc) // copy position -> ordinal
		for o := range ft.N {
			if p, ok := ix.copyOf(o); ok {
				ords[p] = int32(o)
			}
		}
		sums = make([]uint64, nc)
		for k, c := range ft.Copies {
			b, err := ft.ReadCopyBlock(f, k)
			if err != nil {
				report("%v", archiveErr(a.where(), err))
				sums = nil
				break
			}
			for j := range b.Len() {
				api, d := b.Record(j)
				sums[c.First+j] = recordSum(seed, api, d)
				if !ix.sameRow(b.Rows, j, int(ords[c.First+j])) {
					report("archive %s: copy block %d: row %d is not the record it copies", a.where(), k, j)
				}
			}
		}
	}
	for i := range ft.Blocks {
		b, err := ft.ReadBlock(f, i)
		if err != nil {
			report("%v", archiveErr(a.where(), err))
			continue
		}
		for j := range b.Len() {
			api, d := b.Record(j)
			if len(d) > 0 && !isJSONObject(d) {
				report("archive %s: block %d: record %d has details that are not a JSON object", a.where(), i, j)
			}
			o := ft.N - 1 - (ft.Blocks[i].First + j)
			if p, ok := ix.copyOf(o); ok && sums != nil && recordSum(seed, api, d) != sums[p] {
				report("archive %s: block %d: record %d differs from its copy in copy block %d", a.where(), i, j, ft.CopyBlockAt(p))
			}
		}
	}
}

// recordSum hashes a record's API call and details.
func recordSum(seed maphash.Seed, api, details []byte) uint64 {
	var h maphash.Hash
	var n [binary.MaxVarintLen64]byte
	h.SetSeed(seed)
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(api)))])
	h.Write(api)
	h.Write(details)
	return h.Sum64()
}
