package activitystore

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DropBefore deletes every segment and archive whose whole window lies
// before t. A window that straddles t is kept whole, so nothing at or after t
// is ever deleted and some activities before t may remain until their window
// is wholly older than t. Deleted activities disappear from every query at
// once.
func (s *Store) DropBefore(ctx context.Context, t time.Time) error {
	if err := s.enterWrite(); err != nil {
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
	var sls []*sealedSeg
	s.mu.RLock()
	for w := range s.segs {
		if (w+1)*s.width <= end {
			segs = append(segs, w)
		}
	}
	for w, sl := range s.sealed {
		if (w+1)*s.width <= end {
			if s.segs[w] == nil {
				segs = append(segs, w)
			}
			sls = append(sls, sl)
		}
	}
	for w, a := range s.archives {
		if (w+1)*s.width <= end {
			arcs = append(arcs, a)
		}
	}
	s.mu.RUnlock()
	if len(segs) == 0 && len(arcs) == 0 && len(sls) == 0 {
		s.sealMu.Unlock()
		s.swapMu.Unlock()
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, w := range segs {
		if err := s.deleteUserEntries(b, w); err != nil {
			s.sealMu.Unlock()
			s.swapMu.Unlock()
			return fmt.Errorf("activitystore: cannot drop windows before %s: %w", t.Format(time.RFC3339), err)
		}
		lo, hi := s.windowIDs(w)
		b.DeleteRange(recordKey(nil, hi), recordKey(nil, lo), nil)
		b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
		b.Delete(windowKey(prefixDescriptor, w), nil)
		b.DeleteRange(windowKey(prefixLog, w), windowKey(prefixLog, w+1), nil)
		b.Delete(windowKey(prefixDirty, w), nil)
	}
	for _, a := range arcs {
		b.Delete(windowKey(prefixArchive, a.window), nil)
	}
	// A batch applied when its log write failed is seen by reads already:
	// drop the windows from memory too, but keep the files, which a reopen
	// may still need if the batch did not reach the disk.
	applied, err := s.commitApplied(b, pebble.Sync)
	if applied {
		s.mu.Lock()
		for _, w := range segs {
			delete(s.segs, w)
			delete(s.sealed, w)
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
	for _, sl := range sls {
		s.forget(sl)
	}
	return nil
}
