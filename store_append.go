package activitystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// allocSeq reserves n sequence numbers and returns the first: the store's
// node number above its next count.
func (s *Store) allocSeq(n int) (uint64, error) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	first := s.nextSeq
	end := first + uint64(n)
	if end > 1<<countBits {
		return 0, errors.New("activitystore: sequence numbers exhausted")
	}
	if end > s.reservedSeq {
		r := end + seqReserve
		if err := s.set(metaSeq, binary.BigEndian.AppendUint64(nil, r)); err != nil {
			return 0, fmt.Errorf("activitystore: cannot reserve IDs: %w", err)
		}
		s.reservedSeq = r
	}
	s.nextSeq = end
	return uint64(s.opts.Node)<<countBits | first, nil
}

// openSegment returns the open segment of window w, creating it, or
// loading it from its sealed form so that it can take appends. The caller
// holds s.sealMu for reading.
func (s *Store) openSegment(w int64) (*segment, error) {
	s.mu.RLock()
	seg, sl := s.segs[w], s.sealed[w]
	s.mu.RUnlock()
	if seg != nil {
		return seg, nil
	}
	var loaded *segment
	if sl != nil {
		sl.convMu.Lock() // one load per window
		defer sl.convMu.Unlock()
		s.mu.RLock()
		seg = s.segs[w]
		s.mu.RUnlock()
		if seg != nil {
			return seg, nil
		}
		var err error
		if loaded, err = s.loadSealed(sl, &s.dicts, nil); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			// The append's batch marks the window dirty: a crash before
			// the next seal rebuilds it again.
			s.opts.Logger.Errorf("%v; rebuilding it from its records", err)
			s.repaired.Add(1)
			if loaded, err = s.rebuild(w); err != nil {
				return nil, err
			}
		}
	}
	// A new newest window is likely to take as many activities as the one
	// before: its IDs start with room for that many (the previous newest
	// window's if it is open, else the last sealed one's), rather than
	// being copied over and over as they grow.
	hint := 0
	if spans := s.allSpans(); loaded == nil && len(spans) > 0 && spans[0].window < w && spans[0].hot != nil {
		spans[0].hot.mu.RLock()
		hint = min(spans[0].hot.len(), maxIDsHint)
		spans[0].hot.mu.RUnlock()
	}
	s.mu.Lock()
	if seg = s.segs[w]; seg == nil {
		if loaded == nil {
			loaded = newSegment(w)
			if len(s.spans) == 0 || s.spans[0].window < w {
				if hint == 0 {
					hint = int(s.idsHint)
				}
				loaded.ids = make([]ID, 0, hint)
			}
		}
		seg = loaded
		s.segs[w] = seg
		delete(s.sealed, w)
		s.reorder()
	}
	s.mu.Unlock()
	if sl != nil {
		s.forget(sl)
	}
	return seg, nil
}

// forget drops the cached pieces of a sealed segment that was replaced.
func (s *Store) forget(sl *sealedSeg) {
	s.cache.RemoveIf(func(k cacheKey) bool { return k.sl == sl })
}

// Append stores acts and returns their IDs, in the same order. It validates
// every activity first: if one is invalid, it returns a *ValidationError
// (errors.Is ErrInvalidActivity) and stores nothing. Unless Options.NoSync is
// set, the activities are on disk when Append returns; concurrent callers
// share disk syncs. Activities become visible to queries only then.
func (s *Store) Append(ctx context.Context, acts ...Activity) ([]ID, error) {
	if err := s.enterWrite(); err != nil {
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
	// Room for the records, their keys and the append log entries up
	// front, so that neither the batch nor the log entry grows by copies.
	b := s.db.NewBatchWithSize(size + len(acts)*64)
	defer b.Close()
	var kbuf, vbuf []byte
	lbuf := make([]byte, 0, 16*len(acts)+4)
	var windows []int64 // distinct windows of the batch, in batch order
	// logRun writes the append log entry of the run of activities from
	// ids[start:end], all in one window.
	logRun := func(start, end int) error {
		lbuf = lbuf[:0]
		for _, id := range ids[start:end] {
			lbuf = append(lbuf, id[:]...)
		}
		return b.Set(logKey(ids[start].UnixNano()/s.width, first+uint64(start)), appendCRC(lbuf), nil)
	}
	runStart := 0
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
		if w := id.UnixNano() / s.width; len(windows) == 0 || windows[len(windows)-1] != w {
			if i > 0 {
				if err := logRun(runStart, i); err != nil {
					return nil, err
				}
				runStart = i
			}
			windows = append(windows, w)
			if err := b.Set(windowKey(prefixDirty, w), nil, nil); err != nil {
				return nil, err
			}
		}
		for f, l := range a.labels() {
			vals[i][f] = s.dicts[f].intern(l)
		}
	}
	if err := logRun(runStart, len(acts)); err != nil {
		return nil, err
	}
	s.sealMu.RLock()
	// Open the windows first: loading a sealed one reads pebble, which
	// must not yet hold this batch.
	segs := make([]*segment, len(windows)) // of each run of the batch
	for k, w := range windows {
		seg, err := s.openSegment(w)
		if err != nil {
			s.sealMu.RUnlock()
			return nil, err
		}
		segs[k] = seg
	}
	if err := s.commit(b, s.wopts); err != nil {
		s.sealMu.RUnlock()
		return nil, fmt.Errorf("activitystore: cannot append: %w", err)
	}
	var renumber []*segment
	for i, k := 0, 0; i < len(ids); k++ {
		// Under sealMu no seal, renumber or repair replaces an open
		// segment: the one opened above still holds the window.
		w, seg := windows[k], segs[k]
		seg.mu.Lock()
		for ; i < len(ids) && ids[i].UnixNano()/s.width == w; i++ {
			seg.add(ids[i], &vals[i])
		}
		if len(seg.lateByID) > s.lateLimit(seg.len()) {
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

// lateLimit is how many late ordinals a segment of n activities keeps before
// it is renumbered.
func (s *Store) lateLimit(n int) int { return max(s.opts.lateMin, n/8) }

// renumber replaces the segment of window w by its sorted form if it has
// too many late ordinals.
func (s *Store) renumber(w int64) {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg == nil || len(seg.lateByID) <= s.lateLimit(seg.len()) {
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
