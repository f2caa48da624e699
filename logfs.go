package activitystore

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// logFS wraps the file system pebble uses so that a failed write or sync
// of its log (the *.log files) reaches the store at once, before pebble
// acts on it. Pebble cannot go on after such a failure: it panics with its
// commit lock held at the next record, or ends the process. So the store
// records the failure (Store.fail), which makes every commit from then on,
// and every commit in flight, return ErrWriteFailed; pebble is told the
// operation worked, and nothing more is written to any log file. The log
// on disk is then what was written before the failure, which the next
// Open replays: every acknowledged batch, and perhaps some batches whose
// commit failed, each whole or not at all.
type logFS struct {
	vfs.FS
	s *Store
}

func isLog(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs logFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !isLog(name) {
		return f, err
	}
	return &logFile{File: f, s: fs.s}, nil
}

func (fs logFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs logFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return fs.wrap(name, f, err)
}

func (fs logFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

// Unwrap returns the file system logFS wraps.
func (fs logFS) Unwrap() vfs.FS { return fs.FS }

// logFile is a log file whose failed writes and syncs fail the store.
type logFile struct {
	vfs.File
	s *Store
}

func (f *logFile) failed(err error) bool {
	if err == nil {
		return false
	}
	f.s.fail(err)
	return true
}

// dead reports whether the store has failed: its log files then take no
// more bytes, so that nothing lands after a gap.
func (f *logFile) dead() bool { return f.s.failure() != nil }

func (f *logFile) Write(p []byte) (int, error) {
	if !f.dead() {
		if _, err := f.File.Write(p); !f.failed(err) {
			return len(p), nil
		}
	}
	return len(p), nil
}

func (f *logFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.dead() {
		if _, err := f.File.WriteAt(p, off); !f.failed(err) {
			return len(p), nil
		}
	}
	return len(p), nil
}

func (f *logFile) Sync() error {
	if !f.dead() {
		f.failed(f.File.Sync())
	}
	return nil
}

func (f *logFile) SyncData() error {
	if !f.dead() {
		f.failed(f.File.SyncData())
	}
	return nil
}

func (f *logFile) SyncTo(length int64) (bool, error) {
	if f.dead() {
		return true, nil
	}
	full, err := f.File.SyncTo(length)
	if f.failed(err) {
		return true, nil
	}
	return full, nil
}
