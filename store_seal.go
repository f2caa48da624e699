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
		logged := sp.hot.logged
		sp.hot.mu.RUnlock()
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
	b := s.db.NewBatch()
	defer b.Close()
	b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
	b.DeleteRange(windowKey(prefixLog, w), windowKey(prefixLog, w+1), nil)
	if drop {
		b.Delete(windowKey(prefixDirty, w), nil)
	}
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
		sl, err = out.persist(gen, s.opts.inline, &s.dicts, func(k, v []byte) error { return b.Set(k, v, nil) })
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
		if drop {
			return fmt.Errorf("activitystore: cannot seal segment %d: %w", w, err)
		}
		return fmt.Errorf("activitystore: cannot checkpoint segment %d: %w", w, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
