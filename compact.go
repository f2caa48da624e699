package activitystore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
)

// hook reports a step of moving a segment into an archive to the test
// hook, if any.
func (s *Store) hook(step string) {
	if s.opts.hook != nil {
		s.opts.hook(step)
	}
}

// Compact archives every segment whose window ended ColdAfter ago and, when RetainFor is set, deletes what is older than
// RetainFor. Late arrivals for an archived window are merged into a new
// archive of that window. It is safe to run while appends and queries go on;
// one Compact runs at a time. A window that fails (for instance because its
// earlier archive is corrupt) stays as it is and its error is returned, joined
// with the others', after the remaining windows are done.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.enterWrite(); err != nil {
		return err
	}
	defer s.leave()
	return s.compact(ctx)
}

func (s *Store) compact(ctx context.Context) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	// After a failed commit the store's memory may show a batch the disk
	// lacks: an archive it no longer points to on disk would look like an
	// orphan, and the one it does point to like a replaced one. Touch no
	// archive until the store is opened again.
	if err := s.failure(); err != nil {
		return err
	}
	now := s.opts.Now()
	if s.opts.RetainFor > 0 {
		if err := s.dropBefore(ctx, now.Add(-s.opts.RetainFor)); err != nil {
			return err
		}
	}
	cold := now.Add(-s.opts.ColdAfter).UnixNano()
	var errs []error
	// What an earlier Compact left behind (an upload it could not record
	// or remove) goes first.
	if err := s.removeOrphans(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, sp := range s.allSpans() {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if (sp.hot == nil && sp.sl == nil) || (sp.window+1)*s.width > cold || (sp.window+1)*s.width < 0 {
			continue
		}
		// A window that cannot be archived (say, its earlier archive is
		// corrupt) does not hold up the others.
		if err := s.archiveWindow(ctx, sp.window); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// archiveWindow moves the segment of window w, merged with the window's
// earlier archive if any, into a new archive file. It takes a snapshot while
// no append is in flight, so the snapshot's records of the window are
// exactly the segment's; if the segment changes before the move is recorded
// (an append, a renumber or a seal replaced it), it leaves the window for the
// next Compact. Sealing first would be wasted: the archive replaces the
// sealed index.
func (s *Store) archiveWindow(ctx context.Context, w int64) error {
	s.sealMu.Lock()
	s.mu.RLock()
	seg, sl, old := s.segs[w], s.sealed[w], s.archives[w]
	s.mu.RUnlock()
	n0 := 0
	if seg != nil {
		seg.mu.RLock()
		n0 = seg.len()
		seg.mu.RUnlock()
	} else if sl != nil {
		n0 = sl.n
	}
	if n0 == 0 {
		s.sealMu.Unlock()
		return nil
	}
	snap := s.db.NewSnapshot()
	s.sealMu.Unlock()
	defer snap.Close()

	total := n0
	if old != nil {
		total += old.n
	}
	gen, err := s.allocSeq(1)
	if err != nil {
		return err
	}
	name := archiveName(w, gen)
	f, err := s.tier.create(ctx, name)
	if err != nil {
		return err
	}
	defer f.abort()
	size, err := s.writeArchive(ctx, f, s.tier.where(name), w, total, snap, old)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("activitystore: cannot write %s: %w", f.path(), err)
	}
	if err != nil {
		return err
	}
	s.hook("written")
	if err := f.commit(ctx, size); err != nil {
		return err
	}

	a := &archive{window: w, width: s.width, gen: gen, n: total, size: size, name: name, t: s.tier}
	s.swapMu.Lock()
	s.sealMu.Lock()
	s.mu.RLock()
	same := s.segs[w] == seg && s.sealed[w] == sl && s.archives[w] == old
	s.mu.RUnlock()
	if seg != nil {
		seg.mu.RLock()
		same = same && seg.len() == n0
		seg.mu.RUnlock()
	}
	if !same {
		s.sealMu.Unlock()
		s.swapMu.Unlock()
		s.removeObject(name)
		return nil
	}
	lo, hi := s.windowIDs(w)
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.deleteUserEntries(b, w); err != nil {
		s.sealMu.Unlock()
		s.swapMu.Unlock()
		s.removeObject(name)
		return err
	}
	b.Set(windowKey(prefixArchive, w), a.meta(), nil)
	b.DeleteRange(recordKey(nil, hi), recordKey(nil, lo), nil)
	b.DeleteRange(windowKey(prefixSegment, w), windowKey(prefixSegment, w+1), nil)
	b.Delete(windowKey(prefixDescriptor, w), nil)
	b.DeleteRange(windowKey(prefixLog, w), windowKey(prefixLog, w+1), nil)
	b.Delete(windowKey(prefixDirty, w), nil)
	applied, err := s.commitApplied(b, pebble.Sync)
	if applied {
		s.mu.Lock()
		delete(s.segs, w)
		delete(s.sealed, w)
		s.archives[w] = a
		s.reorder()
		s.mu.Unlock()
	}
	s.sealMu.Unlock()
	s.swapMu.Unlock()
	if err != nil {
		// A batch applied when its log write failed may yet be on disk and
		// point to the file, and reads see it already: keep the file. The
		// next Open removes it if nothing points to it.
		if !applied {
			s.removeObject(name)
		}
		return fmt.Errorf("activitystore: cannot record archive %s: %w", s.tier.where(name), err)
	}
	s.hook("committed")
	s.archived.Add(int64(n0))
	if sl != nil {
		s.forget(sl)
	}
	if old != nil {
		s.removeArchive(old)
	}
	s.hook("removed")
	return nil
}

// writeArchive writes the n activities of window w, from the snapshot's
// records merged with the old archive's, newest first, and returns the file
// size.
func (s *Store) writeArchive(ctx context.Context, f arcfmt.File, name string, w int64, n int, snap *pebble.Snapshot, old *archive) (int64, error) {
	copies := 0
	if s.opts.UserCopies > 0 && s.opts.inline > 0 {
		copies = min(s.opts.UserCopies, s.opts.inline)
	}
	aw, err := newArchiveWriter(f, name, w, s.width, n, s.opts.blockBytes, copies, s.opts.format2)
	if err != nil {
		return 0, err
	}
	// Copies beyond what the writer keeps in memory go to a file in the
	// staging folder, which Open empties should a crash leave it there.
	var spill vfs.File
	spillPath := filepath.Join(s.stageDir(), fmt.Sprintf("%016x.copies", uint64(w)))
	aw.w.SpillCopies(s.opts.copyMem, func() (arcfmt.Spill, error) {
		if err := s.opts.FS.MkdirAll(s.stageDir(), 0o755); err != nil {
			return nil, err
		}
		f, err := s.opts.FS.Create(spillPath, vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, err
		}
		spill = f
		return f, nil
	})
	defer func() {
		if spill != nil {
			spill.Close()
			s.opts.FS.Remove(spillPath)
		}
	}()
	lo, hi := s.windowIDs(w)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	it.First()
	// The old archive, read block by block, newest first.
	var ix *arcIndex
	var oldBlocks []arcfmt.Section
	if old != nil {
		if ix, err = s.archiveIndex(ctx, old); err != nil {
			return 0, err
		}
		ft, err := old.footer(ctx)
		if err != nil {
			return 0, err
		}
		oldBlocks = ft.Blocks
	}
	var cur *arcfmt.Block
	bi, bj, pos := 0, 0, 0
	nextOld := func(a *Activity) (bool, error) {
		if old == nil || pos >= old.n {
			return false, nil
		}
		for cur == nil || bj >= oldBlocks[bi].Count {
			if cur != nil {
				bi, bj = bi+1, 0
			}
			// A one-off pass: do not let it evict what queries use.
			c, err := s.loadBlock(ctx, old, bi, false)
			if err != nil {
				return false, err
			}
			cur = c
		}
		api, det := cur.Record(bj)
		ix.fill(a, old.n-1-pos, api, det)
		bj++
		pos++
		return true, nil
	}
	var ha, oa Activity
	haveH, haveO := false, false
	nextHot := func() error {
		haveH = false
		if !it.Valid() {
			return it.Error()
		}
		id, ok := keyID(it.Key())
		if !ok || !id.valid() {
			return corruptf(fmt.Sprintf("record key %x", it.Key()), "not an activity ID")
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := decodeRecord(id, v, &ha); err != nil {
			return corruptf("record "+id.String(), "%v", err)
		}
		haveH = true
		return nil
	}
	if err := nextHot(); err != nil {
		return 0, err
	}
	if haveO, err = nextOld(&oa); err != nil {
		return 0, err
	}
	for k := 0; haveH || haveO; k++ {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if haveH && (!haveO || ha.ID.Compare(oa.ID) > 0) {
			if err := aw.add(&ha); err != nil {
				return 0, err
			}
			it.Next()
			if err := nextHot(); err != nil {
				return 0, err
			}
		} else {
			if err := aw.add(&oa); err != nil {
				return 0, err
			}
			if haveO, err = nextOld(&oa); err != nil {
				return 0, err
			}
		}
	}
	return aw.finish()
}

// removeObject deletes archive name: one written but not recorded, or one
// replaced or dropped. If that fails the next Open or Compact removes it.
func (s *Store) removeObject(name string) {
	ctx, cancel := context.WithTimeout(s.stopCtx, time.Minute)
	defer cancel()
	if err := s.tier.remove(ctx, name); err != nil {
		s.opts.Logger.Errorf("activitystore: cannot remove %s: %v", s.tier.where(name), err)
	}
}

// syncDir makes a rename in dir durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("activitystore: cannot open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("activitystore: cannot sync %s: %w", dir, err)
	}
	return nil
}
