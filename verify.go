package activitystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Verify checks that the indexes and the records agree: every record is
// indexed once, in its window's segment, under the right value of every
// field; every bitmap bit belongs to a record; every segment with unsealed
// activities is marked so for the next Open; every sealed segment on disk is
// whole and agrees with its descriptor. It reads every archive file whole,
// checking its checksums and that its records and bitmaps agree, and lists
// files in the archive folder that are not the store's. It returns nil, or a
// *VerifyError (errors.Is ErrCorrupt) listing every disagreement. It holds
// one window's index in memory at a time. Appends wait while it runs.
func (s *Store) Verify(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if s.rd != nil {
		return s.verifyReader(ctx)
	}
	// Hold off compactions, so that the archives hold still, and appends
	// and seals while the segments in pebble are checked, so that records
	// and indexes hold still; the archives are read after appends resume.
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.sealMu.Lock()
	sealHeld := true
	defer func() {
		if sealHeld {
			s.sealMu.Unlock()
		}
	}()
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	spans := s.allSpans()
	// Records outside every window with a segment in pebble: look in the
	// gaps between those windows.
	next := maxID
	for _, sp := range spans {
		if sp.hot == nil && sp.sl == nil {
			continue
		}
		lo, hi := s.windowIDs(sp.window)
		if err := s.verifyNoRecords(hi, next, report); err != nil {
			return err
		}
		next = lo
	}
	if err := s.verifyNoRecords(ID{}, next, report); err != nil {
		return err
	}
	if err := s.verifyUserEntries(report); err != nil {
		return err
	}
	for _, sp := range spans {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sp.hot == nil && sp.sl == nil {
			continue
		}
		if err := s.verifyWindow(ctx, sp, report); err != nil {
			return err
		}
	}
	s.sealMu.Unlock()
	sealHeld = false
	names := map[string]bool{}
	for _, sp := range s.allSpans() {
		if a := sp.arc; a != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			names[a.name] = true
			s.verifyArchive(ctx, a, report)
		}
	}
	ents, err := s.tier.list(ctx)
	if err != nil {
		return err
	}
	for _, name := range ents {
		if !names[name] && name != ownerObject {
			report("archive folder: %s is not an archive of this store", s.tier.where(name))
		}
	}
	if len(problems) > 0 {
		return &VerifyError{Problems: problems}
	}
	return nil
}

// verifyNoRecords reports the records with IDs in [lo, hi).
func (s *Store) verifyNoRecords(lo, hi ID, report func(string, ...any)) error {
	if lo.Compare(hi) >= 0 {
		return nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if id, ok := keyID(it.Key()); ok {
			report("record %s: window %d has no segment", id, id.UnixNano()/s.width)
		} else {
			report("record key %x is not an activity key", it.Key())
		}
	}
	return it.Close()
}

// verifyWindow checks the segment of one window in pebble against its
// records. The caller holds s.sealMu for writing.
func (s *Store) verifyWindow(ctx context.Context, sp span, report func(string, ...any)) error {
	w := sp.window
	seg, dicts := sp.hot, &s.dicts
	var copies map[ID][]byte // the record copies of a sealed segment
	if seg == nil {
		var scratch [numFields]dict
		var err error
		copies = map[ID][]byte{}
		if seg, err = s.loadSealed(sp.sl, &scratch, copies); err != nil {
			report("%v", err)
			return nil
		}
		dicts = &scratch
		verifyCounts(sp.sl, seg, dicts, report)
	} else {
		seg.mu.RLock()
		defer seg.mu.RUnlock()
		if err := s.verifyDirtyMark(seg, report); err != nil {
			return err
		}
	}
	seen := make([]bool, seg.len())
	lo, hi := s.windowIDs(w)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return err
	}
	var a Activity
	for it.First(); it.Valid(); it.Next() {
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
		o := seg.find(id)
		if o < 0 {
			report("record %s: not in segment %d", id, w)
			continue
		}
		if seen[o] {
			report("record %s: indexed twice in segment %d", id, w)
		}
		if c, ok := copies[id]; ok && !bytes.Equal(c, v) {
			report("record %s: the copy its %s keeps in segment %d differs", id, copyField, w)
		}
		seen[o] = true
		for f, l := range a.labels() {
			vn, ok := dicts[f].lookup(l)
			if !ok || seg.bms[f][vn] == nil || !seg.bms[f][vn].Contains(uint32(o)) {
				report("record %s: %s %q missing from the bitmap of segment %d", id, field(f), l, w)
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for o, ok := range seen {
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
				report("segment %d: %s bitmap of %q holds ordinals past the segment", w, field(f), dicts[f].value(v))
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
	// No activity may live both in pebble and in the window's archive.
	if sp.arc != nil {
		ix, err := s.archiveIndex(ctx, sp.arc)
		if err != nil {
			return nil // verifyArchive reports it
		}
		for _, id := range seg.ids {
			if ix.seg.find(id) >= 0 {
				report("archive %s: activity %s is also in the hot segment", sp.arc.name, id)
			}
		}
	}
	return nil
}

// verifyDirtyMark checks that an open segment with unsealed activities is
// marked so, so that the next Open rebuilds it. The caller holds seg.mu.
func (s *Store) verifyDirtyMark(seg *segment, report func(string, ...any)) error {
	if seg.sealed {
		return nil
	}
	_, c, err := s.db.Get(windowKey(prefixDirty, seg.window))
	if err == pebble.ErrNotFound {
		report("segment %d: unsealed activities but no dirty mark: the next Open would lose its index", seg.window)
		return nil
	}
	if err != nil {
		return err
	}
	return c.Close()
}

// verifyCounts checks the counts per value a sealed segment's descriptor
// keeps against its bitmaps, loaded in seg.
func verifyCounts(sl *sealedSeg, seg *segment, dicts *[numFields]dict, report func(string, ...any)) {
	for _, f := range countedFields {
		counts := sl.counts[f]
		if counts == nil {
			continue
		}
		if len(counts) != len(seg.bms[f]) {
			report("%s: the descriptor counts %d values of %s, the bitmaps hold %d", sl.where(), len(counts), f, len(seg.bms[f]))
			continue
		}
		for vn, bm := range seg.bms[f] {
			v := dicts[f].value(vn)
			if c := bm.GetCardinality(); uint64(counts[v]) != c {
				report("%s: the descriptor counts %d activities of %s %s, its bitmap %d", sl.where(), counts[v], f, clipped(v), c)
			}
		}
	}
}

// verifyUserEntries checks the user entries against the sealed forms in
// pebble, as their descriptors name them: no entry names another form, and
// every user value of a form with entries has one that decodes, unless the
// window is open in memory (rebuilt, or taking appends), when the next
// seal replaces them. The caller holds s.sealMu for writing.
func (s *Store) verifyUserEntries(report func(string, ...any)) error {
	forms := map[int64]*sealedSeg{}
	open := map[int64]bool{}
	s.mu.RLock()
	for w := range s.segs {
		open[w] = true
	}
	s.mu.RUnlock()
	err := s.scanWindows(prefixDescriptor, func(w int64, v []byte) error {
		if sl, err := decodeDescriptor(w, s.width, v); err == nil && sl.far {
			forms[w] = sl
		}
		return nil // a bad descriptor is reported with its window
	})
	if err != nil {
		return err
	}
	entries := map[int64]int{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixUser}, UpperBound: []byte{prefixUser + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, w, gen, ok := userKeyParts(it.Key())
		if !ok {
			report("user entry key %x is malformed", it.Key())
			continue
		}
		sl := forms[w]
		if sl == nil || sl.gen != gen {
			report("user entry of %s %s names segment %d generation %d, which pebble does not hold", copyField, clipped(string(v)), w, gen)
			continue
		}
		entries[w]++
		if open[w] {
			continue
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if _, _, err := decodeUserEntry(raw, sl, string(v)); err != nil {
			report("%v", err)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for w, sl := range forms {
		if open[w] {
			continue
		}
		p := fieldPrefix(w, sl.gen, copyField)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		users := 0
		var k []byte
		for it.First(); it.Valid(); it.Next() {
			users++
			v := string(it.Key()[len(p):])
			_, c, err := s.db.Get(userKey(k[:0], v, w, sl.gen))
			if err == nil {
				c.Close()
			} else if errors.Is(err, pebble.ErrNotFound) {
				report("%s: %s %s has no user entry", sl.where(), copyField, clipped(v))
			} else {
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
		if users != entries[w] {
			report("%s: %d user entries for %d users", sl.where(), entries[w], users)
		}
	}
	return nil
}
