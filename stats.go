package activitystore

import "context"

// Stats describes a store at one moment.
type Stats struct {
	Activities     int // activities stored
	Segments       int // segments in pebble, one per event-time window with activities not archived
	SealedSegments int // segments in pebble whose index is on disk and current
	// OpenSegments counts the segments held in memory: windows with
	// activities not yet sealed. OpenBytes is about what they hold. With
	// CacheBytes, it is the memory of the store's indexes and loaded data.
	OpenSegments int
	OpenBytes    int64
	LateOrdinals int   // activities indexed out of ID order, awaiting a renumber
	DiskBytes    int64 // bytes of the pebble database on disk
	// IndexBytes is the serialized size of the bitmaps of the segments in
	// pebble; IndexBytesByField splits it by field name ("type", "user_id",
	// "module", "action", "resource"). An open segment's share is measured
	// again once it grew by an eighth, so it may lag behind its appends.
	IndexBytes        int64
	IndexBytesByField map[string]int64
	// IDColumnBytes is the size of the ordinal-to-ID columns of the segments
	// in pebble, with the IDs sealed segments keep beside the bitmaps of
	// sparse values.
	IDColumnBytes int64
	// Values counts the distinct values the store holds in memory per field:
	// those of open segments and of the archives loaded.
	Values map[string]int
	// RepairedSegments counts the sealed segments found corrupt, at Open or
	// by a read, and rebuilt from their records.
	RepairedSegments int
	// RebuiltSegments counts the segments rebuilt from their records since
	// Open (repairs, and at Open the windows a crash left unsealed), and
	// RebuiltActivities the records read to do it: 0 after a clean Close.
	RebuiltSegments   int
	RebuiltActivities int
	// SegmentLoads counts the pieces of sealed segments (bitmaps, ID chunks,
	// whole fields, a user's entry of a window) read from pebble since Open.
	SegmentLoads int64
	// RecordReads counts the records queries read from pebble since Open:
	// not those read from archives, nor those decoded from the copies a
	// sealed segment keeps in its sparse users' entries (Options.UserCopies).
	RecordReads int64
	// RecordCacheHits counts the records pages took from the record cache
	// (Options.RecordCacheBytes) since Open, instead of reading them from
	// pebble or an archive; RecordCacheBytes is the memory it holds.
	RecordCacheHits  int64
	RecordCacheBytes int64
	// Archives counts the archive files, ArchivedActivities the activities
	// in them (also counted in Activities) and ArchiveBytes their size.
	Archives           int
	ArchivedActivities int
	ArchiveBytes       int64
	// CacheBytes is the memory held by sealed and archived data loaded for
	// reads, at most CacheLimit (Options.CacheBytes).
	CacheBytes int64
	CacheLimit int64
	// CompactionDebt is pebble's estimate of the bytes it must still
	// compact to settle its levels, and CompactionsRunning its compactions
	// in progress: both high after a bulk load, when reads cross more files.
	CompactionDebt     int64
	CompactionsRunning int
}

// Stats returns counts and sizes of the store. It reads no index from disk.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.enter(); err != nil {
		return Stats{}, err
	}
	defer s.leave()
	if s.rd != nil {
		return s.statsReader(ctx)
	}
	st := Stats{IndexBytesByField: map[string]int64{}, Values: map[string]int{}}
	for _, sp := range s.allSpans() {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		if a := sp.arc; a != nil {
			st.Archives++
			st.ArchivedActivities += a.n
			st.ArchiveBytes += a.size
		}
		var n int
		switch {
		case sp.hot != nil:
			seg := sp.hot
			seg.mu.RLock()
			n = seg.len()
			st.OpenSegments++
			if seg.sealed {
				st.SealedSegments++
			}
			st.LateOrdinals += len(seg.lateByID)
			st.OpenBytes += 16 * int64(cap(seg.ids)) // room made ahead counts
			if seg.pmax != nil {
				st.OpenBytes += 16*int64(cap(seg.pmax)) + 4*int64(len(seg.lateByID))
			}
			for f, b := range seg.indexBytes() {
				st.IndexBytesByField[fieldNames[f]] += int64(b)
				st.IndexBytes += int64(b)
				st.OpenBytes += int64(b) + 64*int64(len(seg.bms[f]))
			}
			seg.mu.RUnlock()
		case sp.sl != nil:
			n = sp.sl.n
			st.SealedSegments++
			st.IDColumnBytes += int64(sp.sl.idsIn)
			for f, b := range sp.sl.bytes {
				st.IndexBytesByField[fieldNames[f]] += int64(b)
				st.IndexBytes += int64(b)
			}
		default:
			continue
		}
		st.Segments++
		st.Activities += n
		st.IDColumnBytes += 16 * int64(n)
	}
	for f := range numFields {
		s.dicts[f].mu.RLock()
		st.Values[fieldNames[f]] = len(s.dicts[f].vals)
		s.dicts[f].mu.RUnlock()
	}
	st.Activities += st.ArchivedActivities
	st.CacheBytes, _ = s.cache.Size()
	st.CacheLimit = s.opts.CacheBytes
	m := s.db.Metrics()
	st.DiskBytes = int64(m.DiskSpaceUsage())
	st.CompactionDebt = int64(m.Compact.EstimatedDebt)
	st.CompactionsRunning = int(m.Compact.NumInProgress)
	st.RepairedSegments = int(s.repaired.Load())
	st.RebuiltSegments = int(s.rebuilt.Load())
	st.RebuiltActivities = int(s.rebuiltActs.Load())
	st.SegmentLoads = s.loads.Load()
	st.RecordReads = s.recordReads.Load()
	st.RecordCacheHits, st.RecordCacheBytes = s.records.stats()
	return st, nil
}

// Counts are the figures of Stats a monitor reads often. Counts computes
// them without walking any index, so their cost grows with the number of
// windows, not with the activities or the distinct values.
type Counts struct {
	Activities         int   // activities stored, archived ones included
	ArchivedActivities int   // activities in archive files
	Segments           int   // segments in pebble
	SealedSegments     int   // segments in pebble whose index is on disk and current
	OpenSegments       int   // segments held in memory
	Archives           int   // archive files
	DiskBytes          int64 // bytes of the pebble database on disk
	ArchiveBytes       int64 // bytes of the archive files
	CacheBytes         int64 // memory of the sealed and archived data loaded for reads
}

// Counts returns the store's counts; see Counts. It reads nothing from disk.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	if err := s.enter(); err != nil {
		return Counts{}, err
	}
	defer s.leave()
	if s.rd != nil {
		return s.countsReader(ctx)
	}
	var c Counts
	for _, sp := range s.allSpans() {
		if err := ctx.Err(); err != nil {
			return Counts{}, err
		}
		if a := sp.arc; a != nil {
			c.Archives++
			c.ArchivedActivities += a.n
			c.ArchiveBytes += a.size
		}
		switch {
		case sp.hot != nil:
			sp.hot.mu.RLock()
			n, sealed := sp.hot.len(), sp.hot.sealed
			sp.hot.mu.RUnlock()
			c.OpenSegments++
			if sealed {
				c.SealedSegments++
			}
			c.Segments++
			c.Activities += n
		case sp.sl != nil:
			c.SealedSegments++
			c.Segments++
			c.Activities += sp.sl.n
		}
	}
	c.Activities += c.ArchivedActivities
	c.CacheBytes, _ = s.cache.Size()
	c.DiskBytes = int64(s.db.Metrics().DiskSpaceUsage())
	return c, nil
}
