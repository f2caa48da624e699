package activitystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Backup writes a consistent copy of the store into dir, which must not
// exist or be empty, while appends and queries go on: a pebble checkpoint
// (its tables hard-linked where the file system allows) and the archive
// files it refers to, in dir/archive. Compaction and DropBefore wait for
// it. Open(dir) then gives the store as it was at one instant of the
// backup: every activity acknowledged before Backup was called, none
// partial, and a clean Verify. A failed Backup removes what it wrote.
//
// A store whose archives are in a bucket (Options.S3) copies only pebble:
// the archives stay in the bucket, which keeps its own copies. The backup
// opens with the same S3 options, and only while the bucket still holds
// the archives it refers to (a later Compact of the same window or
// retention removes them; Verify names any that are missing). Opened with
// those options it is that node again, and removes the node's objects it
// does not know, those the original wrote after the backup: open it only
// in place of the original, never beside it.
func (s *Store) Backup(ctx context.Context, dir string) (err error) {
	if err := s.enterWrite(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.failure(); err != nil {
		return err
	}
	fs := s.opts.FS
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	// The folder is checked and made under compactMu, so that two backups
	// into it cannot both start; a failed backup removes only what it made.
	created := false
	switch names, err := fs.List(dir); {
	case err == nil && len(names) > 0:
		return fmt.Errorf("activitystore: backup: %s is not empty", dir)
	case errors.Is(err, os.ErrNotExist):
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("activitystore: backup: %w", err)
		}
		created = true
	case err != nil:
		return fmt.Errorf("activitystore: backup: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			fs.RemoveAll(dir)
		} else {
			fs.RemoveAll(filepath.Join(dir, "db"))
			fs.RemoveAll(filepath.Join(dir, "archive"))
		}
	}()
	// Under compactMu the set of archives cannot change.
	s.mu.RLock()
	arcs := make([]*archive, 0, len(s.archives))
	for _, a := range s.archives {
		arcs = append(arcs, a)
	}
	s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Checkpoint(filepath.Join(dir, "db"), pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("activitystore: backup: checkpoint: %w", err)
	}
	if err := s.failure(); err != nil {
		return err // the checkpoint's log may lack what it should hold
	}
	arcDir := filepath.Join(dir, "archive")
	if err := fs.MkdirAll(arcDir, 0o755); err != nil {
		return fmt.Errorf("activitystore: backup: %w", err)
	}
	dt, local := s.tier.(*dirTier)
	if !local {
		arcs = nil
	}
	for _, a := range arcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyFile(fs, dt.where(a.name), filepath.Join(arcDir, a.name)); err != nil {
			return fmt.Errorf("activitystore: backup: archive %s: %w", a.name, err)
		}
	}
	if err := syncDir(fs, arcDir); err != nil {
		return err
	}
	return syncDir(fs, dir)
}

// copyFile makes dst a durable copy of src: a hard link when the file
// system allows (archive files never change), else a copy.
func copyFile(fs vfs.FS, src, dst string) error {
	if err := fs.Link(src, dst); err == nil {
		return nil
	}
	in, err := fs.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := fs.Create(dst, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
