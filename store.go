package activitystore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/activitystore/activitystore/internal/lru"
)

// seqReserve is how many sequence numbers one durable reservation covers.
const seqReserve = 1 << 20

// Store is an activity store on one directory. Its methods are safe for
// concurrent use.
//
// A window's activities live in one of three tiers: an open segment (in
// memory, taking appends), a sealed segment (its index in pebble, read
// piece by piece on demand) or an archive file; late arrivals into an
// archived window add an open or sealed segment beside the archive. Only
// open segments are held in memory; sealed and archived data pass through
// one cache bounded by Options.CacheBytes.
//
// Lock order: a goroutine that holds a lock only takes locks below it.
//
//	closeMu (read: every call in flight; write: Close)
//	compactMu (one Compact or DropBefore at a time)
//	swapMu (read: a read from span lookup to record fetch; write: records leave pebble)
//	sealMu (read: an append from commit to indexing; write: seal, renumber, repair, Verify)
//	mu (the window maps and spans)
//	segment.mu (one open segment)
//	leaves: archive.mu, archive.loadMu, the cache, dict.mu, tailLog.mu, seqMu
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
	failed  atomic.Pointer[error] // the sticky error of every write after a failed commit

	// sealMu is held for reading from the commit of an append batch until its
	// activities are indexed, and for writing while a segment is renumbered,
	// sealed or repaired, so that the in-memory index and pebble agree
	// whenever a seal is written.
	sealMu sync.RWMutex

	// swapMu is held for reading by every read from span lookup to record
	// fetch, and for writing while records move to an archive or are
	// deleted, so that no read finds an ID whose record just left.
	swapMu sync.RWMutex

	mu       sync.RWMutex         // guards segs, sealed, archives and spans
	segs     map[int64]*segment   // open segments, in memory
	sealed   map[int64]*sealedSeg // sealed segments, in pebble
	archives map[int64]*archive
	spans    []span // every window with data, newest first; replaced, never changed in place

	tier     tier    // where archives live
	rd       *reader // set by OpenReader
	readOnly bool    // OpenReader's store and its node stores
	archDir  string
	cache    *lru.Cache[cacheKey, any]
	records  *recordCache       // nil: Options.RecordCacheBytes is -1
	sealWait map[int64]sealWait // due windows the background sealer lets wait; its own
	// idsHint is the activities of window hintWindow, the newest sealed,
	// at most maxIDsHint; under mu.
	idsHint, hintWindow int64
	compactMu           sync.Mutex   // one compaction or drop at a time
	archived            atomic.Int64 // activities moved to archives by this Store
	stopCtx             context.Context
	stopFn              context.CancelFunc

	dicts [numFields]dict
	tail  tailLog

	seqMu       sync.Mutex
	nextSeq     uint64
	reservedSeq uint64

	stop chan struct{}
	bg   sync.WaitGroup

	repaired    atomic.Int64 // sealed segments found corrupt and rebuilt from their records
	rebuilt     atomic.Int64 // segments rebuilt from their records
	rebuiltActs atomic.Int64 // records read to rebuild them
	loads       atomic.Int64 // pieces of sealed segments read from pebble
	recordReads atomic.Int64 // records queries read from pebble
	copyReads   atomic.Int64 // records read from pebble to copy them beside a sealed segment's bitmaps
}

// Open opens the store in dir, creating it if needed. A nil opts gives the
// defaults. It returns ErrLocked if another Store has dir open.
//
// Open reads one small descriptor per sealed segment and per archive; it
// reads records only for the windows a crash left with unsealed
// activities (Stats.RebuiltActivities says how many).
func Open(dir string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.MustExist {
		d, err := pebble.Peek(filepath.Join(dir, "db"), o.FS)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !d.Exists) {
			return nil, fmt.Errorf("%w: %s", ErrNoStore, dir)
		}
		if err != nil {
			return nil, fmt.Errorf("activitystore: cannot read %s: %w", dir, err)
		}
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
	s := &Store{
		opts: o, dir: dir, lock: lf, stop: make(chan struct{}),
		segs: make(map[int64]*segment), sealed: make(map[int64]*sealedSeg), archives: make(map[int64]*archive),
	}
	s.archDir = o.ArchiveDir
	if s.archDir == "" {
		s.archDir = filepath.Join(dir, "archive")
	}
	if o.S3 != nil {
		t, err := newS3Tier(*o.S3, o.Node, s.stageDir(), o.FS)
		if err != nil {
			lf.Close()
			return nil, err
		}
		t.hook = o.hook
		s.tier = t
	} else {
		s.tier = &dirTier{fs: o.FS, dir: s.archDir, hook: o.hook}
	}
	s.cache = lru.New[cacheKey, any](o.CacheBytes)
	s.records = newRecordCache(o.RecordCacheBytes)
	s.tail.init(o.TailBacklog)
	s.stopCtx, s.stopFn = context.WithCancel(context.Background())
	s.wopts = pebble.Sync
	if o.NoSync {
		s.wopts = pebble.NoSync
	}
	po := o.pebbleOptions()
	po.FS = logFS{FS: o.FS, s: s}
	cache := pebble.NewCache(o.BlockCacheSize)
	po.Cache = cache
	if o.Pebble != nil {
		o.Pebble(po)
	}
	db, err := openPebble(filepath.Join(dir, "db"), po)
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
	s.sealWait = map[int64]sealWait{}
	go s.every(o.SealEvery, "sealing", s.sealBackground)
	if o.CompactEvery > 0 {
		s.bg.Add(1)
		go s.every(o.CompactEvery, "compaction", s.compact)
	}
	return s, nil
}

// metaUint64 reads a uint64 metadata value.
func (s *Store) metaUint64(k []byte) (uint64, bool, error) {
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

// load reads the metadata, the archive records and the sealed segments'
// descriptors, and rebuilds the segments of windows with unsealed
// activities from their records.
func (s *Store) load() error {
	format, ok, err := s.metaUint64(metaFormat)
	if err != nil {
		return err
	}
	width, _, err := s.metaUint64(metaWidth)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		width = uint64(s.opts.SegmentWidth)
		if width == 0 {
			width = uint64(defaultSegmentWidth)
		}
		b := s.db.NewBatch()
		b.Set(metaFormat, binary.BigEndian.AppendUint64(nil, storeFormat), nil)
		b.Set(metaWidth, binary.BigEndian.AppendUint64(nil, width), nil)
		if err := s.commit(b, pebble.Sync); err != nil {
			return fmt.Errorf("activitystore: cannot initialize store: %w", err)
		}
	case format == 1:
		if err := s.upgradeFormat1(); err != nil {
			return err
		}
	case format != storeFormat:
		return fmt.Errorf("activitystore: %s has format %d, this version reads %d", s.dir, format, storeFormat)
	}
	if width < uint64(time.Second) || width > uint64(1<<50) {
		return corruptf("metadata width", "segment width %d", width)
	}
	if s.opts.SegmentWidth != 0 && uint64(s.opts.SegmentWidth) != width {
		return fmt.Errorf("%w: SegmentWidth %s differs from the store's %s", ErrInvalidOptions, s.opts.SegmentWidth, time.Duration(width))
	}
	s.width = int64(width)
	if s.reservedSeq, _, err = s.metaUint64(metaSeq); err != nil {
		return err
	}
	s.nextSeq = max(s.reservedSeq, 1)

	if err := s.checkNode(); err != nil {
		return err
	}
	if err := s.checkTier(); err != nil {
		return err
	}
	if t, ok := s.tier.(*s3Tier); ok {
		if err := s.claimNode(context.Background(), t); err != nil {
			return err
		}
	}
	if err := s.loadArchives(context.Background()); err != nil {
		return err
	}
	dirty := map[int64]bool{}
	err = s.scanWindows(prefixDirty, func(w int64, _ []byte) error {
		dirty[w] = true
		return nil
	})
	if err != nil {
		return err
	}
	written := map[int64]*sealedSeg{} // descriptors of dirty windows
	err = s.scanWindows(prefixDescriptor, func(w int64, v []byte) error {
		sl, err := decodeDescriptor(w, s.width, v)
		if dirty[w] {
			if err == nil {
				written[w] = sl
			}
			return nil
		}
		if err != nil {
			// Rebuild it from its records, and mark it so a crash before
			// its next seal rebuilds it again.
			s.opts.Logger.Errorf("%v; rebuilding it from its records", err)
			s.repaired.Add(1)
			dirty[w] = true
			return s.set(windowKey(prefixDirty, w), nil)
		}
		s.sealed[w] = sl
		return nil
	})
	if err != nil {
		return err
	}
	for w := range dirty {
		seg, err := s.recover(w, written[w])
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

// scanWindows calls fn with the window and value of every key of prefix,
// passing over keys of impossible windows. v is valid during the call only.
func (s *Store) scanWindows(prefix byte, fn func(w int64, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		w, ok := keyWindow(it.Key())
		if !ok || !s.validWindow(w) {
			s.opts.Logger.Errorf("activitystore: ignoring key %x: not a window", it.Key())
			continue
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(w, v)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// upgradeFormat1 converts a store of format 1, whose sealed segments were
// one value per field, by dropping those values and marking their windows
// dirty: this Open rebuilds them from their records, and the next seal
// writes them in the current form.
func (s *Store) upgradeFormat1() error {
	b := s.db.NewBatch()
	defer b.Close()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSegment}, UpperBound: []byte{prefixSegment + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == 10 {
			b.Set(windowKey(prefixDirty, int64(binary.BigEndian.Uint64(k[1:9]))), nil, nil)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	b.DeleteRange([]byte{prefixSegment}, []byte{prefixSegment + 1}, nil)
	b.DeleteRange([]byte{prefixUser}, []byte{prefixUser + 1}, nil)
	b.Set(metaFormat, binary.BigEndian.AppendUint64(nil, storeFormat), nil)
	if err := s.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("activitystore: cannot upgrade %s to format %d: %w", s.dir, storeFormat, err)
	}
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

// recover rebuilds the segment of dirty window w: from its last written
// form sl and the records its append log names when it can, else from all
// its records.
func (s *Store) recover(w int64, sl *sealedSeg) (*segment, error) {
	if sl != nil {
		seg, err := s.loadSealed(sl, &s.dicts, nil)
		var n int
		if err == nil {
			n, err = s.applyLog(seg)
		}
		if err == nil {
			if len(seg.lateByID) > s.lateLimit(seg.len()) {
				seg = seg.sorted()
			}
			seg.sealed = false // its dirty mark stays until the next seal
			seg.logged = n
			s.rebuilt.Add(1)
			s.rebuiltActs.Add(int64(n))
			return seg, nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		s.opts.Logger.Errorf("activitystore: segment %d: %v; rebuilding it from its records", w, err)
	}
	return s.rebuild(w)
}

// applyLog adds to seg, the last written form of its window, the
// activities of the window's append log, and returns how many.
func (s *Store) applyLog(seg *segment) (int, error) {
	w := seg.window
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: windowKey(prefixLog, w), UpperBound: windowKey(prefixLog, w+1)})
	if err != nil {
		return 0, err
	}
	var ids []ID
	for it.First(); it.Valid(); it.Next() {
		body, ok := checkCRC(it.Value())
		if !ok || len(body)%16 != 0 {
			it.Close()
			return 0, corruptf(fmt.Sprintf("append log of segment %d", w), "bad checksum or length")
		}
		for i := 0; i < len(body); i += 16 {
			var id ID
			copy(id[:], body[i:])
			if id.UnixNano()/s.width != w || !id.valid() {
				it.Close()
				return 0, corruptf(fmt.Sprintf("append log of segment %d", w), "ID %s is not of the window", id)
			}
			if seg.find(id) < 0 {
				ids = append(ids, id)
			}
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	slices.SortFunc(ids, func(a, b ID) int { return b.Compare(a) })
	ids = slices.Compact(ids)
	hs := make([]hit, len(ids))
	for i, id := range ids {
		hs[i].id = id
	}
	acts := make([]Activity, len(ids))
	if err := s.fetchPebble(hs, nil, acts, false); err != nil {
		return 0, err
	}
	for i := len(acts) - 1; i >= 0; i-- { // oldest first
		var vals [numFields]uint32
		for f, l := range acts[i].labels() {
			vals[f] = s.dicts[f].intern(l)
		}
		seg.add(acts[i].ID, &vals)
	}
	return len(ids), nil
}

// rebuild indexes window w from its records. It reads the two halves of
// the window in parallel, each with a forward scan (newest first), and
// builds each bitmap in one call, so that a crash costs little at the next
// Open even when the window is large.
func (s *Store) rebuild(w int64) (*segment, error) {
	lo, hi := s.windowIDs(w)
	mid := idFloor(lo.UnixNano() + (hi.UnixNano()-lo.UnixNano())/2)
	if hi == maxID || mid.Compare(lo) <= 0 {
		mid = lo
	}
	type half struct {
		ids  []ID
		vals [][numFields]uint32
		err  error
	}
	var halves [2]half // newer, older
	var wg sync.WaitGroup
	for k, r := range [2][2]ID{{mid, hi}, {lo, mid}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &halves[k]
			h.ids, h.vals, h.err = s.scanLabels(r[0], r[1])
		}()
	}
	wg.Wait()
	for _, h := range halves {
		if h.err != nil {
			return nil, h.err
		}
	}
	n := len(halves[0].ids) + len(halves[1].ids)
	seg := newSegment(w)
	seg.ids = make([]ID, 0, n)
	col := make([]uint32, 0, n*int(numFields))
	// Oldest first: the older half, then the newer, each scanned newest first.
	for _, h := range []half{halves[1], halves[0]} {
		for i := len(h.ids) - 1; i >= 0; i-- {
			seg.ids = append(seg.ids, h.ids[i])
			col = append(col, h.vals[i][:]...)
		}
	}
	for f := range numFields {
		buildBitmaps(seg.bms[f], col, int(f), n)
	}
	s.rebuilt.Add(1)
	s.rebuiltActs.Add(int64(n))
	return seg, nil
}

// scanLabels reads the records with IDs in [lo, hi), newest first, and
// returns their IDs and label value numbers.
func (s *Store) scanLabels(lo, hi ID) ([]ID, [][numFields]uint32, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	var ids []ID
	var vals [][numFields]uint32
	var a Activity
	for it.First(); it.Valid(); it.Next() {
		id, ok := keyID(it.Key())
		if !ok || !id.valid() {
			return nil, nil, corruptf(fmt.Sprintf("record key %x", it.Key()), "not an activity ID")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, err
		}
		if err := decodeRecord(id, v, &a); err != nil {
			return nil, nil, corruptf("record "+id.String(), "%v", err)
		}
		var vs [numFields]uint32
		for f, l := range a.labels() {
			vs[f] = s.dicts[f].intern(l)
		}
		ids = append(ids, id)
		vals = append(vals, vs)
	}
	return ids, vals, it.Error()
}

// buildBitmaps fills bms with a bitmap per value of field f, from col, the
// label value numbers of n ordinals, numFields per ordinal.
func buildBitmaps(bms map[uint32]*roaring.Bitmap, col []uint32, f, n int) {
	counts := map[uint32]int{}
	for o := range n {
		counts[col[o*int(numFields)+f]]++
	}
	lists := make(map[uint32][]uint32, len(counts))
	for v, c := range counts {
		lists[v] = make([]uint32, 0, c)
	}
	for o := range n {
		v := col[o*int(numFields)+f]
		lists[v] = append(lists[v], uint32(o))
	}
	for v, ords := range lists {
		bm := roaring.New()
		bm.AddMany(ords)
		bms[v] = bm
	}
}

// span is one window with data: its segment in pebble (open, or sealed),
// its archive, or an archive and a pebble segment of late arrivals.
type span struct {
	window int64
	hot    *segment
	sl     *sealedSeg
	arc    *archive
}

// reorder rebuilds s.spans from the window maps. The caller holds s.mu for
// writing, or is Open.
func (s *Store) reorder() {
	spans := make([]span, 0, len(s.segs)+len(s.sealed)+len(s.archives))
	for w, seg := range s.segs {
		spans = append(spans, span{window: w, hot: seg, arc: s.archives[w]})
	}
	for w, sl := range s.sealed {
		if s.segs[w] == nil {
			spans = append(spans, span{window: w, sl: sl, arc: s.archives[w]})
		}
	}
	for w, a := range s.archives {
		if s.segs[w] == nil && s.sealed[w] == nil {
			spans = append(spans, span{window: w, arc: a})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(b.window, a.window) })
	s.spans = spans
}

// allSpans returns every window with data, newest first; the slice is
// shared and must not be changed.
func (s *Store) allSpans() []span {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.spans
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

// enterWrite is enter for a call that writes: it also fails on a store
// opened with OpenReader.
func (s *Store) enterWrite() error {
	if s.readOnly {
		return ErrReadOnly
	}
	return s.enter()
}

func (s *Store) leave() { s.closeMu.RUnlock() }

// Close stops the background work, seals every open segment, so that the
// next Open reads no record, and closes the store, waiting for calls in
// flight. Closing twice is safe; every other call after Close returns
// ErrClosed. A segment that cannot be sealed stays marked for a rebuild
// from its records at the next Open, and its error is returned.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.stopFn()
	s.bg.Wait()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.rd != nil {
		return s.closeReader()
	}
	// After a failed commit pebble cannot switch to a new log, which a
	// flush needs: the store only closes.
	err := s.failure()
	if err == nil {
		err = s.sealAll()
		// Flush the memtable, so that the next Open has no log to replay.
		if ferr := s.db.Flush(); err == nil {
			err = ferr
		}
	}
	s.mu.Lock()
	for _, a := range s.archives {
		a.drop()
	}
	s.mu.Unlock()
	if derr := s.db.Close(); err == nil {
		err = derr
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
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
			if s.failure() != nil { // logged once, when it happened
				s.leave()
				continue
			}
			if err := job(s.stopCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.opts.Logger.Errorf("activitystore: %s: %v", what, err)
			}
			s.leave()
		}
	}
}

// commit applies b with opts. Once a write or sync of pebble's log has
// failed (see logFS), the store cannot tell which of its batches reached
// the disk: every commit from then on, and every commit in flight then,
// returns the same error wrapping ErrWriteFailed, and its caller indexes
// nothing of it.
func (s *Store) commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	_, err := s.commitApplied(b, opts)
	return err
}

// commitApplied is commit, and says whether pebble applied the batch: when
// it did but the commit failed, reads of pebble already see the batch, and
// a caller whose batch deletes what its in-memory state still shows must
// update that state as if the commit worked (the batch may yet be on disk
// after a reopen, or not).
func (s *Store) commitApplied(b *pebble.Batch, opts *pebble.WriteOptions) (applied bool, err error) {
	if err := s.failure(); err != nil {
		return false, err
	}
	defer func() {
		if r := recover(); r != nil {
			cf, ok := r.(commitFailure)
			if !ok {
				panic(r)
			}
			applied, err = true, s.fail(cf.err)
		}
	}()
	if err := s.db.Apply(b, opts); err != nil {
		return false, err
	}
	return true, s.failure()
}

// set writes one key with a synchronous commit.
func (s *Store) set(k, v []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(k, v, nil); err != nil {
		return err
	}
	return s.commit(b, pebble.Sync)
}

// Activities is what a service needs to record and read activity, which
// both *Store (embedded) and *client.Client (a server) provide, so that it
// can switch between them in one line.
type Activities interface {
	Append(ctx context.Context, acts ...Activity) ([]ID, error)
	Get(ctx context.Context, id ID) (Activity, error)
	Recent(ctx context.Context, limit, skip int) ([]Activity, error)
}

var _ Activities = (*Store)(nil)

// WriteErr returns the error, wrapping ErrWriteFailed, that every write
// returns since a write or sync of pebble's log failed, or nil while the
// store takes writes. A health check can report it.
func (s *Store) WriteErr() error { return s.failure() }

// failure returns the sticky error of a failed commit, or nil.
func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail makes cause the store's sticky write error and returns it.
func (s *Store) fail(cause error) error {
	err := fmt.Errorf("%w: %w", ErrWriteFailed, cause)
	if s.failed.CompareAndSwap(nil, &err) {
		s.opts.Logger.Errorf("%v; the store refuses writes until it is opened again", err)
	}
	return s.failure()
}
