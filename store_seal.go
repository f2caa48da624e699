package activitystore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// sealDue seals every open segment whose window ended SealAfter ago.
func (s *Store) sealDue(ctx context.Context) error { return s.sealPass(ctx, false) }

// sealBackground is the background sealer's pass: sealDue, but a due
// window that took appends since the previous pass waits for a pass that
// finds it idle, for at most maxBusyPasses passes. A window loaded from
// history (an import of old activities, all of them due) is then sealed
// once, after its load, not again and again while it fills; a checkpoint
// still bounds what a crash leaves to replay.
func (s *Store) sealBackground(ctx context.Context) error { return s.sealPass(ctx, true) }

// maxBusyPasses is how many passes of the background sealer a due window
// may wait for while it takes appends.
const maxBusyPasses = 10

// busy reports whether the due window w, holding n activities, took
// appends since the previous pass and may wait. Only the background
// sealer calls it.
func (s *Store) busy(w int64, n int) bool {
	st, ok := s.sealWait[w]
	if ok && st.n == n || st.passes >= maxBusyPasses {
		delete(s.sealWait, w)
		return false
	}
	s.sealWait[w] = sealWait{n: n, passes: st.passes + 1}
	return true
}

// sealWait is what the background sealer saw of a due window it let wait.
type sealWait struct{ n, passes int }

func (s *Store) sealPass(ctx context.Context, background bool) error {
	cutoff := s.opts.Now().Add(-s.opts.SealAfter).UnixNano()
	spans := s.allSpans()
	if background {
		// Forget the windows no longer open (sealed by Close, Compact or
		// a pass that found them idle).
		for w := range s.sealWait {
			if i, ok := slices.BinarySearchFunc(spans, w, func(sp span, w int64) int { return cmp.Compare(w, sp.window) }); !ok || spans[i].hot == nil {
				delete(s.sealWait, w)
			}
		}
	}
	for _, sp := range spans {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sp.hot == nil {
			continue
		}
		sp.hot.mu.RLock()
		due := !sp.hot.sealed && (sp.window+1)*s.width <= cutoff
		logged, n := sp.hot.logged, sp.hot.len()
		sp.hot.mu.RUnlock()
		if due && background && s.busy(sp.window, n) {
			due = false
		}
		var err error
		switch {
		case due:
			err = s.seal(sp.window)
		case logged >= s.opts.checkpoint:
			err = s.checkpoint(sp.window)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sealAll seals every open segment, whatever its window's age.
func (s *Store) sealAll() error {
	var errs []error
	for _, sp := range s.allSpans() {
		if sp.hot != nil {
			if err := s.seal(sp.window); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// seal writes the open segment of window w, sorted, in its sealed form and
// clears the window's dirty mark and append log, in one pebble batch, and
// then drops the segment from memory: later reads load what they need of it.
func (s *Store) seal(w int64) error { return s.write(w, true) }

// checkpoint writes the open segment of window w in its sealed form and
// clears its append log, but keeps it open and marked dirty: after a crash,
// Open loads the written form and reads only the records the log names.
func (s *Store) checkpoint(w int64) error { return s.write(w, false) }

// maxIDsHint bounds the IDs a new window's segment makes room for at
// first (16 MiB).
const maxIDsHint = 1 << 20

// write is seal (drop) or checkpoint (!drop).
func (s *Store) write(w int64, drop bool) error {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg == nil {
		return nil
	}
	var sl *sealedSeg
	var recs map[ID][]byte
	seg.mu.RLock()
	n := seg.len()
	out := seg.sorted()
	if drop && s.opts.UserCopies > 0 && s.opts.inline > 0 {
		recs = sparseIDs(out, min(s.opts.UserCopies, s.opts.inline))
	}
	seg.mu.RUnlock()
	if len(recs) > 0 {
		if err := s.gatherCopies(w, recs); err != nil {
			return err
		}
	}
	// Room for what the batch will hold, so that it does not grow by
	// copies: the ID column and the inline IDs (16 bytes an activity each,
	// at most), the bitmaps (a few bytes an activity) and the copies.
	size := 40*n + 1<<16
	for _, r := range recs {
		size += len(r) + 3
	}
	b := s.db.NewBatchWithSize(size)
	defer b.Close()
	if err := s.deleteUserEntries(b, w); err != nil {
		return err
	}
	b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
	b.DeleteRange(windowKey(prefixLog, w), windowKey(prefixLog, w+1), nil)
	if drop {
		b.Delete(windowKey(prefixDirty, w), nil)
	}
	if n > 0 {
		gen, err := s.allocSeq(1)
		if err != nil {
			return err
		}
		if out == seg {
			// Encoding runs RunOptimize on the bitmaps, a change: take the
			// lock.
			seg.mu.Lock()
		}
		sl, err = out.persist(gen, s.opts.inline, s.opts.UserCopies, recs, &s.dicts, func(k, v []byte) error { return b.Set(k, v, nil) })
		if out == seg {
			seg.mu.Unlock()
		}
		if err != nil {
			return err
		}
		b.Set(windowKey(prefixDescriptor, w), sl.encode(), nil)
	} else {
		b.Delete(windowKey(prefixDescriptor, w), nil)
	}
	if err := s.commit(b, pebble.Sync); err != nil {
		if drop {
			return fmt.Errorf("activitystore: cannot seal segment %d: %w", w, err)
		}
		return fmt.Errorf("activitystore: cannot checkpoint segment %d: %w", w, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if drop && n > 0 && (s.idsHint == 0 || w >= s.hintWindow) {
		s.idsHint, s.hintWindow = int64(min(n, maxIDsHint)), w
	}
	if drop {
		delete(s.segs, w)
		if sl != nil {
			s.sealed[w] = sl
		}
	} else {
		out.logged = 0
		if out != seg {
			s.segs[w] = out
		} else {
			seg.mu.Lock()
			seg.logged = 0
			seg.mu.Unlock()
		}
	}
	s.reorder()
	return nil
}

// sparseIDs returns the IDs of the activities of seg whose user has at most
// limit of them, as the keys of a map for their records. The caller holds
// seg.mu.
func sparseIDs(seg *segment, limit int) map[ID][]byte {
	n := 0
	for _, bm := range seg.bms[copyField] {
		if c := bm.GetCardinality(); c <= uint64(limit) {
			n += int(c)
		}
	}
	recs := make(map[ID][]byte, n)
	for _, bm := range seg.bms[copyField] {
		if bm.GetCardinality() <= uint64(limit) {
			for it := bm.Iterator(); it.HasNext(); {
				recs[seg.ids[it.Next()]] = nil
			}
		}
	}
	return recs
}

// gatherCopies fills recs, keyed by ID, with the records of window w: those
// the window's previous sealed form kept copies of from there, the others
// from pebble, by seeks when they are few (a window sealed again after late
// arrivals), else in one scan of the window. An ID without a record keeps
// nil.
func (s *Store) gatherCopies(w int64, recs map[ID][]byte) error {
	missing := len(recs)
	if v, c, err := s.db.Get(windowKey(prefixDescriptor, w)); err == nil {
		prev, derr := decodeDescriptor(w, s.width, v)
		c.Close()
		if derr == nil && prev.copies > 0 {
			vals, err := s.sealedFieldUncached(prev, copyField, true)
			if err == nil {
				for _, vb := range vals {
					for i, r := range vb.recs {
						if old, want := recs[vb.ids[i]]; want && old == nil {
							recs[vb.ids[i]] = r
							missing--
						}
					}
				}
			}
			// An error leaves the previous form unused: the records are
			// the truth, and are read below.
		}
	}
	if missing == 0 {
		return nil
	}
	var keep recordArena
	if missing > len(recs)/4 {
		return s.readRecords(w, recs, &keep)
	}
	ids := make([]ID, 0, missing)
	for id, r := range recs {
		if r == nil {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b ID) int { return b.Compare(a) }) // key order
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	var k [17]byte
	for _, id := range ids {
		key := recordKey(k[:0], id)
		if !it.SeekGE(key) || !bytes.Equal(it.Key(), key) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		s.copyReads.Add(1)
		recs[id] = keep.add(v)
	}
	return it.Close()
}

// readRecords fills the entries of recs that are nil with the records of
// window w in pebble, kept in keep, in one forward scan of the window. An
// ID without a record keeps nil.
func (s *Store) readRecords(w int64, recs map[ID][]byte, keep *recordArena) error {
	lo, hi := s.windowIDs(w)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		id, ok := keyID(it.Key())
		if !ok {
			continue
		}
		if r, want := recs[id]; !want || r != nil {
			continue
		}
		s.copyReads.Add(1)
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		recs[id] = keep.add(v)
	}
	return it.Close()
}

// recordArena keeps copies of records in shared buffers of 1 MiB, so that
// copying many small records costs few allocations.
type recordArena struct{ buf []byte }

// add returns a copy of v.
func (a *recordArena) add(v []byte) []byte {
	if len(a.buf)+len(v) > cap(a.buf) {
		a.buf = make([]byte, 0, max(1<<20, len(v)))
	}
	a.buf = append(a.buf, v...)
	return a.buf[len(a.buf)-len(v) : len(a.buf) : len(a.buf)]
}
