package activitystore

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Stats describes a store at one moment.
type Stats struct {
	Activities     int   // activities stored
	Segments       int   // segments in pebble, one per event-time window with activities not archived
	SealedSegments int   // segments in pebble whose index is on disk and current
	LateOrdinals   int   // activities indexed out of ID order, awaiting a renumber
	DiskBytes      int64 // bytes of the pebble database on disk
	// IndexBytes is the serialized size of all bitmaps; IndexBytesByField
	// splits it by field name ("type", "user_id", "module", "action",
	// "resource").
	IndexBytes        int64
	IndexBytesByField map[string]int64
	// IDColumnBytes is the size of the ordinal-to-ID columns of the segments.
	IDColumnBytes int64
	// Values counts the distinct values seen per field.
	Values map[string]int
	// RepairedSegments counts the segments Open found with a corrupt index
	// and rebuilt from their records.
	RepairedSegments int
	// Archives counts the archive files, ArchivedActivities the activities
	// in them (also counted in Activities) and ArchiveBytes their size.
	Archives           int
	ArchivedActivities int
	ArchiveBytes       int64
	// CacheBytes is the memory held by archived data loaded for queries.
	CacheBytes int64
}

// Stats returns counts and sizes of the store.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.enter(); err != nil {
		return Stats{}, err
	}
	defer s.leave()
	st := Stats{IndexBytesByField: map[string]int64{}, Values: map[string]int{}}
	for _, seg := range s.segments() {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		seg.mu.RLock()
		st.Activities += seg.len()
		st.Segments++
		if seg.sealed {
			st.SealedSegments++
		}
		st.LateOrdinals += len(seg.lateByID)
		st.IDColumnBytes += 16 * int64(seg.len())
		for f, b := range seg.indexBytes() {
			st.IndexBytesByField[fieldNames[f]] += int64(b)
			st.IndexBytes += int64(b)
		}
		seg.mu.RUnlock()
	}
	for f := range numFields {
		s.dicts[f].mu.RLock()
		st.Values[fieldNames[f]] = len(s.dicts[f].vals)
		s.dicts[f].mu.RUnlock()
	}
	s.mu.RLock()
	for _, a := range s.archives {
		st.Archives++
		st.ArchivedActivities += a.n
		st.ArchiveBytes += a.size
	}
	s.mu.RUnlock()
	st.Activities += st.ArchivedActivities
	st.CacheBytes, _ = s.cache.Size()
	st.DiskBytes = int64(s.db.Metrics().DiskSpaceUsage())
	st.RepairedSegments = int(s.repaired.Load())
	return st, nil
}

// Verify checks that the indexes and the records agree: every record is
// indexed once, in its window's segment, under the right value of every
// field; every bitmap bit belongs to a record; every segment with unsealed
// activities is marked so for the next Open; every sealed segment's index on
// disk matches the one in memory. It reads every archive file whole, checking
// its checksums and that its records and bitmaps agree, and lists files in
// the archive folder that are not the store's. It returns nil, or a
// *VerifyError (errors.Is ErrCorrupt) listing every disagreement. Appends
// wait while it runs.
func (s *Store) Verify(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	// Hold off appends and seals so records and indexes hold still.
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	s.mu.RLock()
	segs := make(map[int64]*segment, len(s.segs))
	for w, seg := range s.segs {
		segs[w] = seg
	}
	s.mu.RUnlock()
	seen := make(map[int64][]bool, len(segs))
	for w, seg := range segs {
		seen[w] = make([]bool, seg.len())
	}

	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return err
	}
	var a Activity
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				it.Close()
				return err
			}
		}
		id, ok := keyID(it.Key())
		if !ok || !id.valid() {
			report("record key %x is not an activity key", it.Key())
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := decodeRecord(id, v, &a); err != nil {
			report("record %s: cannot decode: %v", id, err)
			continue
		}
		w := id.UnixNano() / s.width
		seg := segs[w]
		if seg == nil {
			report("record %s: window %d has no segment", id, w)
			continue
		}
		o := seg.find(id)
		if o < 0 {
			report("record %s: not in segment %d", id, w)
			continue
		}
		if seen[w][o] {
			report("record %s: indexed twice in segment %d", id, w)
		}
		seen[w][o] = true
		for f, l := range a.labels() {
			vn, ok := s.dicts[f].lookup(l)
			if !ok || seg.bms[f][vn] == nil || !seg.bms[f][vn].Contains(uint32(o)) {
				report("record %s: %s %q missing from the bitmap of segment %d", id, field(f), l, w)
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}

	for w, seg := range segs {
		lo, hi := s.windowIDs(w)
		for o, ok := range seen[w] {
			if !ok {
				report("segment %d: ordinal %d (ID %s) has no record", w, o, seg.ids[o])
			}
			id := seg.ids[o]
			if id.Compare(lo) < 0 || id.Compare(hi) >= 0 {
				report("segment %d: ordinal %d (ID %s) lies outside the window", w, o, id)
			}
		}
		for f := range numFields {
			var total uint64
			for v, bm := range seg.bms[f] {
				total += bm.GetCardinality()
				if !bm.IsEmpty() && int(bm.Maximum()) >= seg.len() {
					report("segment %d: %s bitmap of %q holds ordinals past the segment", w, field(f), s.dicts[f].value(v))
				}
			}
			if total != uint64(seg.len()) {
				report("segment %d: %s bitmaps hold %d ordinals for %d activities", w, field(f), total, seg.len())
			}
		}
		for o := 1; o < seg.len(); o++ {
			if seg.late == nil || !seg.late.Contains(uint32(o)) {
				if seg.ids[o].Compare(seg.pmaxAt(o-1)) <= 0 {
					report("segment %d: ordinal %d is out of order but not marked late", w, o)
				}
			}
		}
		if err := s.verifyPersisted(seg, report); err != nil {
			return err
		}
	}
	s.mu.RLock()
	arcs := make([]*archive, 0, len(s.archives))
	names := map[string]bool{}
	for _, a := range s.archives {
		arcs = append(arcs, a)
		names[a.name] = true
	}
	s.mu.RUnlock()
	for _, a := range arcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.verifyArchive(a, report)
	}
	ents, err := os.ReadDir(s.archDir)
	if err != nil {
		return fmt.Errorf("activitystore: %w", err)
	}
	for _, e := range ents {
		if !names[e.Name()] {
			report("archive folder: %s is not an archive of this store", e.Name())
		}
	}
	if len(problems) > 0 {
		return &VerifyError{Problems: problems}
	}
	return nil
}

// verifyPersisted checks what the next Open will load for seg: the sealed
// index if seg is sealed, otherwise the dirty mark that makes Open rebuild.
func (s *Store) verifyPersisted(seg *segment, report func(string, ...any)) error {
	w := seg.window
	_, c, err := s.db.Get(windowKey(prefixDirty, w))
	marked := err == nil
	if marked {
		c.Close()
	} else if err != pebble.ErrNotFound {
		return err
	}
	if !seg.sealed {
		if !marked {
			report("segment %d: unsealed activities but no dirty mark: the next Open would lose its index", w)
		}
		return nil
	}
	if marked {
		return nil
	}
	var parts [][]byte
	for _, p := range segmentParts {
		v, c, err := s.db.Get(segmentKey(w, p))
		if err == pebble.ErrNotFound {
			report("segment %d: sealed but part %q is missing on disk", w, p)
			return nil
		}
		if err != nil {
			return err
		}
		parts = append(parts, bytes.Clone(v))
		c.Close()
	}
	var scratch [numFields]dict
	disk, err := decodeSegment(w, s.width, parts, &scratch)
	if err != nil {
		report("%v", err)
		return nil
	}
	if disk.len() != seg.len() {
		report("segment %d: %d activities on disk, %d in memory", w, disk.len(), seg.len())
		return nil
	}
	for o := range seg.ids {
		if disk.ids[o] != seg.ids[o] {
			report("segment %d: ID column differs on disk at ordinal %d", w, o)
			break
		}
	}
	for f := range numFields {
		for v, bm := range disk.bms[f] {
			mv, ok := s.dicts[f].lookup(scratch[f].value(v))
			if !ok || seg.bms[f][mv] == nil || !seg.bms[f][mv].Equals(bm) {
				report("segment %d: %s bitmap of %q differs on disk", w, field(f), scratch[f].value(v))
			}
		}
		if len(disk.bms[f]) != len(seg.bms[f]) {
			report("segment %d: %s has %d values on disk, %d in memory", w, field(f), len(disk.bms[f]), len(seg.bms[f]))
		}
	}
	return nil
}
