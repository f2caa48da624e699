package activitystore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/activitystore/activitystore/internal/lru"
	"github.com/activitystore/activitystore/internal/record"
)

// Key space of the pebble database. Records sort newest first: the key of an
// activity is 'r' followed by the bitwise complement of its ID.
const (
	prefixRecord  = record.Prefix // 'r' ^ID -> record
	prefixDirty   = 'd'           // 'd' window -> nothing: the window has unsealed activities
	prefixSegment = 's'           // 's' window part -> persisted segment index
	prefixMeta    = 'm'           // 'm' name -> store metadata
)

var (
	metaFormat = []byte("mformat") // format version of the store
	metaWidth  = []byte("mwidth")  // segment width in ns
	metaSeq    = []byte("mseq")    // sequence numbers below this may have been used
)

// storeFormat is the on-disk format version. Bump it when keys or values
// change in a way older code cannot read.
const storeFormat = 1

// seqReserve is how many sequence numbers one durable reservation covers.
const seqReserve = 1 << 20

func recordKey(dst []byte, id ID) []byte { return record.AppendKey(dst, id) }

func keyID(k []byte) (ID, bool) {
	id, ok := record.KeyID(k)
	return ID(id), ok
}

func windowKey(prefix byte, w int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefix}, uint64(w))
}

func segmentKey(w int64, part byte) []byte { return append(windowKey(prefixSegment, w), part) }

// Store is an activity store on one directory. Its methods are safe for
// concurrent use.
type Store struct {
	opts  Options
	dir   string
	width int64 // segment width in ns
	db    *pebble.DB
	lock  *os.File
	wopts *pebble.WriteOptions

	// closeMu is held for reading by every call in flight; Close takes it
	// for writing once closed is set.
	closeMu sync.RWMutex
	closed  atomic.Bool

	// sealMu is held for reading from the commit of an append batch until its
	// activities are indexed, and for writing while a segment is renumbered
	// or sealed, so that the in-memory index and pebble agree whenever a
	// seal is written.
	sealMu sync.RWMutex

	// swapMu is held for reading by every read from ID lookup to record
	// fetch, and for writing while records move to an archive or are
	// deleted, so that no read finds an ID whose record just left.
	swapMu sync.RWMutex

	mu       sync.RWMutex // guards segs, archives, order and spans
	segs     map[int64]*segment
	archives map[int64]*archive
	order    []*segment // hot segments, newest window first; replaced, never changed in place
	spans    []span     // every window with data, newest first; replaced, never changed in place

	archDir   string
	cache     *lru.Cache[cacheKey, any]
	compactMu sync.Mutex   // one compaction or drop at a time
	archived  atomic.Int64 // activities moved to archives by this Store
	stopCtx   context.Context
	stopFn    context.CancelFunc

	dicts [numFields]dict
	tail  tailLog

	seqMu       sync.Mutex
	nextSeq     uint64
	reservedSeq uint64

	stop     chan struct{}
	bg       sync.WaitGroup
	repaired atomic.Int64 // segments rebuilt at open because their index was corrupt
}

// Open opens the store in dir, creating it if needed. A nil opts gives the
// defaults. It returns ErrLocked if another Store has dir open.
func Open(dir string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("activitystore: cannot create %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, "LOCK")
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot open %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("activitystore: cannot lock %s: %w", lockPath, err)
	}
	s := &Store{opts: o, dir: dir, lock: lf, segs: make(map[int64]*segment), archives: make(map[int64]*archive), stop: make(chan struct{})}
	s.archDir = o.ArchiveDir
	if s.archDir == "" {
		s.archDir = filepath.Join(dir, "archive")
	}
	s.cache = lru.New[cacheKey, any](o.CacheBytes)
	s.tail.init(o.TailBacklog)
	s.stopCtx, s.stopFn = context.WithCancel(context.Background())
	s.wopts = pebble.Sync
	if o.NoSync {
		s.wopts = pebble.NoSync
	}
	po := o.pebbleOptions()
	cache := pebble.NewCache(o.BlockCacheSize)
	po.Cache = cache
	if o.Pebble != nil {
		o.Pebble(po)
	}
	db, err := pebble.Open(filepath.Join(dir, "db"), po)
	cache.Unref()
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("activitystore: cannot open pebble in %s: %w", dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		lf.Close()
		return nil, err
	}
	s.bg.Add(1)
	go s.every(o.SealEvery, "sealing", s.sealDue)
	if o.CompactEvery > 0 {
		s.bg.Add(1)
		go s.every(o.CompactEvery, "compaction", s.compact)
	}
	return s, nil
}

// load reads the metadata and the segment indexes, rebuilding the segments
// of windows with unsealed activities from their records.
func (s *Store) load() error {
	get := func(k []byte) (uint64, bool, error) {
		v, c, err := s.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		defer c.Close()
		if len(v) != 8 {
			return 0, false, corruptf("metadata "+string(k[1:]), "value is %d bytes", len(v))
		}
		return binary.BigEndian.Uint64(v), true, nil
	}
	format, ok, err := get(metaFormat)
	if err != nil {
		return err
	}
	width, _, err := get(metaWidth)
	if err != nil {
		return err
	}
	if !ok {
		width = uint64(s.opts.SegmentWidth)
		if width == 0 {
			width = uint64(defaultSegmentWidth)
		}
		b := s.db.NewBatch()
		b.Set(metaFormat, binary.BigEndian.AppendUint64(nil, storeFormat), nil)
		b.Set(metaWidth, binary.BigEndian.AppendUint64(nil, width), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("activitystore: cannot initialize store: %w", err)
		}
	} else if format != storeFormat {
		return fmt.Errorf("activitystore: %s has format %d, this version reads %d", s.dir, format, storeFormat)
	}
	if width < uint64(time.Second) || width > uint64(1<<50) {
		return corruptf("metadata width", "segment width %d", width)
	}
	if s.opts.SegmentWidth != 0 && uint64(s.opts.SegmentWidth) != width {
		return fmt.Errorf("%w: SegmentWidth %s differs from the store's %s", ErrInvalidOptions, s.opts.SegmentWidth, time.Duration(width))
	}
	s.width = int64(width)
	if s.reservedSeq, _, err = get(metaSeq); err != nil {
		return err
	}
	s.nextSeq = max(s.reservedSeq, 1)

	if err := s.loadArchives(); err != nil {
		return err
	}

	dirty := map[int64]bool{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDirty}, UpperBound: []byte{prefixDirty + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == 9 {
			if w := int64(binary.BigEndian.Uint64(k[1:])); s.validWindow(w) {
				dirty[w] = true
			} else {
				s.opts.Logger.Errorf("activitystore: ignoring dirty mark of impossible window %d", w)
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	marked := maps.Clone(dirty)

	// Sealed segments: one key per part, grouped by window.
	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSegment}, UpperBound: []byte{prefixSegment + 1}})
	if err != nil {
		return err
	}
	// Gather each window's parts, then decode the windows in parallel.
	type sealed struct {
		w     int64
		parts [][]byte
		seg   *segment
		err   error
	}
	var all []*sealed
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 10 {
			continue
		}
		w := int64(binary.BigEndian.Uint64(k[1:9]))
		if !s.validWindow(w) {
			s.opts.Logger.Errorf("activitystore: ignoring segment key of impossible window %d", w)
			continue
		}
		if dirty[w] {
			continue
		}
		if len(all) == 0 || all[len(all)-1].w != w {
			all = append(all, &sealed{w: w})
		}
		last := all[len(all)-1]
		last.parts = append(last.parts, slices.Clone(it.Value()))
	}
	if err := it.Close(); err != nil {
		return err
	}
	work := make(chan *sealed)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(all), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range work {
				x.seg, x.err = decodeSegment(x.w, s.width, x.parts, &s.dicts)
				x.parts = nil
			}
		}()
	}
	for _, x := range all {
		work <- x
	}
	close(work)
	wg.Wait()
	for _, x := range all {
		if x.err != nil {
			s.opts.Logger.Errorf("%v; rebuilding it from its records", x.err)
			s.repaired.Add(1)
			dirty[x.w] = true
			continue
		}
		s.segs[x.w] = x.seg
	}
	for w := range dirty {
		if !marked[w] {
			// A repaired segment: mark it so a crash before its next seal
			// rebuilds it again.
			if err := s.db.Set(windowKey(prefixDirty, w), nil, pebble.Sync); err != nil {
				return err
			}
		}
		seg, err := s.rebuild(w)
		if err != nil {
			return err
		}
		if seg.len() > 0 {
			s.segs[w] = seg
		}
	}
	s.reorder()
	return nil
}

// validWindow reports whether some activity ID can fall in window w.
func (s *Store) validWindow(w int64) bool {
	return w >= 0 && w <= (maxIDMillis*1e6)/s.width
}

// windowIDs returns the ID range [lo, hi) of window w.
func (s *Store) windowIDs(w int64) (ID, ID) {
	end := (w + 1) * s.width
	if end < 0 || end/s.width != w+1 { // past int64: no ID reaches it
		return idFloor(w * s.width), maxID
	}
	return idFloor(w * s.width), idFloor(end)
}

// rebuild indexes window w from its records, oldest first, so the result is
// sorted.
func (s *Store) rebuild(w int64) (*segment, error) {
	lo, hi := s.windowIDs(w)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	seg := newSegment(w)
	var a Activity
	for it.Last(); it.Valid(); it.Prev() {
		id, ok := keyID(it.Key())
		if !ok || !id.valid() {
			return nil, corruptf(fmt.Sprintf("record key %x", it.Key()), "not an activity ID")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if err := decodeRecord(id, v, &a); err != nil {
			return nil, corruptf("record "+id.String(), "%v", err)
		}
		var vals [numFields]uint32
		for f, l := range a.labels() {
			vals[f] = s.dicts[f].intern(l)
		}
		seg.add(id, &vals)
	}
	return seg, it.Error()
}

// span is one window with data: its hot segment, its archive, or both
// (late arrivals into an archived window).
type span struct {
	window int64
	hot    *segment
	arc    *archive
}

// reorder rebuilds s.order and s.spans from s.segs and s.archives. The
// caller holds s.mu for writing, or is Open.
func (s *Store) reorder() {
	order := make([]*segment, 0, len(s.segs))
	for _, seg := range s.segs {
		order = append(order, seg)
	}
	slices.SortFunc(order, func(a, b *segment) int { return cmp.Compare(b.window, a.window) })
	s.order = order
	spans := make([]span, 0, len(s.segs)+len(s.archives))
	for _, seg := range order {
		spans = append(spans, span{window: seg.window, hot: seg, arc: s.archives[seg.window]})
	}
	for w, a := range s.archives {
		if s.segs[w] == nil {
			spans = append(spans, span{window: w, arc: a})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(b.window, a.window) })
	s.spans = spans
}

// enter starts a call; it fails once the store is closed.
func (s *Store) enter() error {
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.closeMu.RUnlock() }

// Close stops the background sealer and closes the store, waiting for calls
// in flight. Closing twice is safe; every other call after Close returns
// ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.stopFn()
	s.bg.Wait()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	s.mu.Lock()
	for _, a := range s.archives {
		a.drop()
	}
	s.mu.Unlock()
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// allocSeq reserves n sequence numbers and returns the first.
func (s *Store) allocSeq(n int) (uint64, error) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	first := s.nextSeq
	end := first + uint64(n)
	if end > maxSeq {
		return 0, errors.New("activitystore: sequence numbers exhausted")
	}
	if end > s.reservedSeq {
		r := end + seqReserve
		if err := s.db.Set(metaSeq, binary.BigEndian.AppendUint64(nil, r), pebble.Sync); err != nil {
			return 0, fmt.Errorf("activitystore: cannot reserve IDs: %w", err)
		}
		s.reservedSeq = r
	}
	s.nextSeq = end
	return first, nil
}

// segment returns the segment of window w, creating it. The caller holds
// s.sealMu for reading.
func (s *Store) segment(w int64) *segment {
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg != nil {
		return seg
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg = s.segs[w]; seg == nil {
		seg = newSegment(w)
		s.segs[w] = seg
		s.reorder()
	}
	return seg
}

// segments returns the segments newest first; the slice is shared and must
// not be changed.
func (s *Store) segments() []*segment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.order
}

// Append stores acts and returns their IDs, in the same order. It validates
// every activity first: if one is invalid, it returns a *ValidationError
// (errors.Is ErrInvalidActivity) and stores nothing. Unless Options.NoSync is
// set, the activities are on disk when Append returns; concurrent callers
// share disk syncs. Activities become visible to queries only then.
func (s *Store) Append(ctx context.Context, acts ...Activity) ([]ID, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(acts) == 0 {
		return nil, nil
	}
	if len(acts) > MaxBatch {
		return nil, &ValidationError{Index: MaxBatch, Field: "", Reason: fmt.Sprintf("batch of %d activities is over the limit of %d", len(acts), MaxBatch)}
	}
	now := s.opts.Now()
	nowNS := now.UnixNano()
	size := 0
	for i := range acts {
		a := &acts[i]
		if err := a.validate(i, now); err != nil {
			return nil, err
		}
		if a.Time.IsZero() && (now.Before(time.Unix(0, 0)) || nowNS > maxIDMillis*1e6) {
			return nil, &ValidationError{Index: i, Field: "time", Reason: "zero time and the store's clock is outside 1970..2262"}
		}
		size += 32 + len(a.Type) + len(a.UserID) + len(a.Module) + len(a.Action) + len(a.APICall) + len(a.Resource) + len(a.Details)
		if size > MaxBatchBytes {
			return nil, &ValidationError{Index: i, Field: "", Reason: fmt.Sprintf("batch is over the limit of %d bytes", MaxBatchBytes)}
		}
	}
	first, err := s.allocSeq(len(acts))
	if err != nil {
		return nil, err
	}
	ids := make([]ID, len(acts))
	vals := make([][numFields]uint32, len(acts))
	b := s.db.NewBatchWithSize(len(acts) * 64)
	defer b.Close()
	var kbuf, vbuf []byte
	lastW := int64(-1)
	for i := range acts {
		a := &acts[i]
		ns := nowNS
		if !a.Time.IsZero() {
			ns = a.Time.UnixNano()
		}
		id := makeID(ns, first+uint64(i))
		ids[i] = id
		kbuf = recordKey(kbuf[:0], id)
		vbuf = appendRecord(vbuf[:0], a)
		if err := b.Set(kbuf, vbuf, nil); err != nil {
			return nil, err
		}
		if w := id.UnixNano() / s.width; w != lastW {
			if err := b.Set(windowKey(prefixDirty, w), nil, nil); err != nil {
				return nil, err
			}
			lastW = w
		}
		for f, l := range a.labels() {
			vals[i][f] = s.dicts[f].intern(l)
		}
	}
	s.sealMu.RLock()
	if err := s.db.Apply(b, s.wopts); err != nil {
		s.sealMu.RUnlock()
		return nil, fmt.Errorf("activitystore: cannot append: %w", err)
	}
	var renumber []*segment
	for i := 0; i < len(ids); {
		w := ids[i].UnixNano() / s.width
		seg := s.segment(w)
		seg.mu.Lock()
		for ; i < len(ids) && ids[i].UnixNano()/s.width == w; i++ {
			seg.add(ids[i], &vals[i])
		}
		if len(seg.lateByID) > lateLimit(seg.len()) {
			renumber = append(renumber, seg)
		}
		seg.mu.Unlock()
	}
	s.sealMu.RUnlock()
	s.tail.push(ids, vals)
	for _, seg := range renumber {
		s.renumber(seg.window)
	}
	return ids, nil
}

// renumber replaces the segment of window w by its sorted form if it has
// too many late ordinals.
func (s *Store) renumber(w int64) {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg == nil || len(seg.lateByID) <= lateLimit(seg.len()) {
		return
	}
	seg.mu.RLock()
	out := seg.sorted()
	seg.mu.RUnlock()
	s.mu.Lock()
	s.segs[w] = out
	s.reorder()
	s.mu.Unlock()
}

// Get returns the activity with the given ID, or an error wrapping
// ErrNotFound.
func (s *Store) Get(ctx context.Context, id ID) (Activity, error) {
	acts, found, err := s.getMany(ctx, []ID{id})
	if err != nil {
		return Activity{}, err
	}
	if !found[0] {
		return Activity{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return acts[0], nil
}

// getMany reads the activities of ids, which may come in any order; found[i]
// is false when no activity has ids[i]. The records in pebble are read with
// one iterator.
func (s *Store) getMany(ctx context.Context, ids []ID) ([]Activity, []bool, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.swapMu.RLock()
	defer s.swapMu.RUnlock()
	out := make([]Activity, len(ids))
	found := make([]bool, len(ids))
	var hot []int // indexes of the IDs found in pebble
	for i, id := range ids {
		if !id.valid() {
			continue
		}
		w := id.UnixNano() / s.width
		s.mu.RLock()
		seg, arc := s.segs[w], s.archives[w]
		s.mu.RUnlock()
		if seg != nil {
			seg.mu.RLock()
			o := seg.find(id)
			seg.mu.RUnlock()
			if o >= 0 {
				hot = append(hot, i)
				continue
			}
		}
		if arc == nil {
			continue
		}
		ix, err := s.archiveIndex(arc)
		if err != nil {
			return nil, nil, err
		}
		if ix.seg.find(id) < 0 {
			continue
		}
		if err := s.fetchArchived(arc, ids[i:i+1], out[i:i+1]); err != nil {
			return nil, nil, err
		}
		found[i] = true
	}
	if len(hot) == 0 {
		return out, found, nil
	}
	slices.SortFunc(hot, func(a, b int) int { return ids[b].Compare(ids[a]) })
	hotIDs := make([]ID, 0, len(hot))
	for _, i := range hot {
		if n := len(hotIDs); n == 0 || hotIDs[n-1] != ids[i] {
			hotIDs = append(hotIDs, ids[i])
		}
	}
	acts, err := s.fetch(hotIDs)
	if err != nil {
		return nil, nil, err
	}
	k := 0
	for _, i := range hot {
		for acts[k].ID != ids[i] {
			k++
		}
		out[i], found[i] = acts[k], true
	}
	return out, found, nil
}

// fetchFrom reads the activities of ids, newest first; src[i] is the archive
// holding ids[i], or nil for pebble. The caller holds s.swapMu for reading.
func (s *Store) fetchFrom(ids []ID, src []*archive) ([]Activity, error) {
	hot := true
	for _, a := range src {
		if a != nil {
			hot = false
			break
		}
	}
	if hot {
		return s.fetch(ids)
	}
	out := make([]Activity, len(ids))
	var hotIDs []ID
	var hotAt []int
	for i := 0; i < len(ids); {
		if src[i] == nil {
			hotIDs = append(hotIDs, ids[i])
			hotAt = append(hotAt, i)
			i++
			continue
		}
		j := i + 1
		for j < len(ids) && src[j] == src[i] {
			j++
		}
		if err := s.fetchArchived(src[i], ids[i:j], out[i:j]); err != nil {
			return nil, err
		}
		i = j
	}
	acts, err := s.fetch(hotIDs)
	if err != nil {
		return nil, err
	}
	for k, i := range hotAt {
		out[i] = acts[k]
	}
	return out, nil
}

// fetch reads the records of ids, which are in descending order, with one
// iterator. The activities share one buffer.
func (s *Store) fetch(ids []ID) ([]Activity, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	lower := recordKey(nil, ids[0])
	upper := append(recordKey(nil, ids[len(ids)-1]), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make([]Activity, len(ids))
	var arena []byte
	offs := make([]int, len(ids)+1)
	var key [17]byte
	for i, id := range ids {
		k := recordKey(key[:0], id)
		// Matches are often adjacent keys: step with Next before seeking.
		found := false
		if i > 0 && it.Valid() {
			for step := 0; step < 2 && it.Next(); step++ {
				if c := bytes.Compare(it.Key(), k); c >= 0 {
					found = c == 0
					break
				}
			}
		}
		if !found && (!it.SeekGE(k) || !bytes.Equal(it.Key(), k)) {
			if err := it.Error(); err != nil {
				return nil, err
			}
			return nil, &CorruptionError{Where: "record " + id.String(), Err: errors.New("indexed but missing")}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if arena == nil {
			arena = make([]byte, 0, (len(v)+32)*len(ids)*5/4)
		}
		arena = append(arena, v...)
		offs[i+1] = len(arena)
	}
	for i, id := range ids {
		if err := decodeRecord(id, arena[offs[i]:offs[i+1]:offs[i+1]], &out[i]); err != nil {
			return nil, &CorruptionError{Where: "record " + id.String(), Err: err}
		}
	}
	return out, nil
}

// every runs job every d until Close, logging its errors; a job cut short
// by Close is not an error.
func (s *Store) every(d time.Duration, what string, job func(context.Context) error) {
	defer s.bg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.enter(); err != nil {
				return
			}
			if err := job(s.stopCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.opts.Logger.Errorf("activitystore: %s: %v", what, err)
			}
			s.leave()
		}
	}
}

// sealDue seals every unsealed segment whose window ended SealAfter ago.
func (s *Store) sealDue(ctx context.Context) error {
	cutoff := s.opts.Now().Add(-s.opts.SealAfter).UnixNano()
	for _, seg := range s.segments() {
		if err := ctx.Err(); err != nil {
			return err
		}
		seg.mu.RLock()
		due := !seg.sealed && (seg.window+1)*s.width <= cutoff
		seg.mu.RUnlock()
		if due {
			if err := s.seal(seg.window); err != nil {
				return err
			}
		}
	}
	return nil
}

// seal sorts the segment of window w, writes its index and clears its dirty
// mark, in one pebble batch.
func (s *Store) seal(w int64) error {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg == nil {
		return nil
	}
	seg.mu.RLock()
	if seg.sealed {
		seg.mu.RUnlock()
		return nil
	}
	out := seg.sorted()
	seg.mu.RUnlock()
	if out == seg {
		// Encoding runs RunOptimize on the bitmaps, a change: take the lock.
		seg.mu.Lock()
		defer seg.mu.Unlock()
	}
	parts, err := out.encode(&s.dicts)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for i, p := range parts {
		b.Set(segmentKey(w, segmentParts[i]), p, nil)
	}
	b.Delete(windowKey(prefixDirty, w), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot seal segment %d: %w", w, err)
	}
	out.sealed = true
	if out != seg {
		s.mu.Lock()
		s.segs[w] = out
		s.reorder()
		s.mu.Unlock()
	}
	return nil
}
