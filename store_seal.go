package activitystore

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// sealDue seals every open segment whose window ended SealAfter ago.
func (s *Store) sealDue(ctx context.Context) error {
	cutoff := s.opts.Now().Add(-s.opts.SealAfter).UnixNano()
	for _, sp := range s.allSpans() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sp.hot == nil {
			continue
		}
		sp.hot.mu.RLock()
		due := !sp.hot.sealed && (sp.window+1)*s.width <= cutoff
		sp.hot.mu.RUnlock()
		if due {
			if err := s.seal(sp.window); err != nil {
				return err
			}
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
// clears the window's dirty mark, in one pebble batch, and then drops the
// segment from memory: later reads load what they need of it.
func (s *Store) seal(w int64) error {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	s.mu.RLock()
	seg := s.segs[w]
	s.mu.RUnlock()
	if seg == nil {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
	b.Delete(windowKey(prefixDirty, w), nil)
	var sl *sealedSeg
	seg.mu.RLock()
	n := seg.len()
	out := seg.sorted()
	seg.mu.RUnlock()
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
		sl, err = out.persist(gen, &s.dicts, func(k, v []byte) error { return b.Set(k, v, nil) })
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
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("activitystore: cannot seal segment %d: %w", w, err)
	}
	s.mu.Lock()
	delete(s.segs, w)
	if sl != nil {
		s.sealed[w] = sl
	}
	s.reorder()
	s.mu.Unlock()
	return nil
}
