package activitystore

import (
	"cmp"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// openPebble opens the pebble database in dir. Pebble accepts a log that
// ends inside a record only when it is its newest log. A write of a log
// can fail after pebble moved on to a newer log (a memtable filled up
// before the failure surfaced), and the failed log is then no longer the
// newest: pebble refuses to open. When it does, openPebble removes the
// newer logs that hold no record, and opens again: nothing is lost that
// pebble would not drop from the end of its newest log.
func openPebble(dir string, po *pebble.Options) (*pebble.DB, error) {
	db, err := pebble.Open(dir, po)
	if err == nil || !strings.Contains(err.Error(), "error when replaying WAL") {
		return db, err
	}
	fs := po.FS
	if fs == nil {
		fs = vfs.Default
	}
	empty, lerr := emptyNewestLogs(fs, dir)
	if lerr != nil || len(empty) == 0 {
		return nil, err
	}
	for _, name := range empty {
		if rerr := fs.Remove(name); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
	}
	if po.Logger != nil {
		po.Logger.Infof("activitystore: removed %d empty log(s) after a log that ends inside a record: %s", len(empty), strings.Join(empty, ", "))
	}
	return pebble.Open(dir, po)
}

// emptyNewestLogs returns the paths of pebble's newest logs in dir that
// hold no whole record, newest first, up to the newest one that holds one.
func emptyNewestLogs(fs vfs.FS, dir string) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	type log struct {
		num  uint64
		path string
	}
	var logs []log
	for _, name := range names {
		stem, ok := strings.CutSuffix(name, ".log")
		if n, err := strconv.ParseUint(stem, 10, 64); ok && err == nil {
			logs = append(logs, log{n, filepath.Join(dir, name)})
		}
	}
	slices.SortFunc(logs, func(a, b log) int { return cmp.Compare(b.num, a.num) })
	var empty []string
	for i, l := range logs {
		if i == len(logs)-1 {
			break // the oldest stays: pebble's error was about a log before another
		}
		has, err := logHasRecord(fs, l.path, l.num)
		if err != nil {
			return nil, err
		}
		if has {
			break
		}
		empty = append(empty, l.path)
	}
	return empty, nil
}

// logHasRecord reports whether the log at path, number num, holds at
// least one whole record.
func logHasRecord(fs vfs.FS, path string, num uint64) (bool, error) {
	f, err := fs.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := newLogReader(record.NewReader, f, num)
	rec, err := r.Next()
	if err == nil {
		_, err = io.Copy(io.Discard, rec)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, io.EOF), errors.Is(err, record.ErrUnexpectedEOF),
		errors.Is(err, record.ErrInvalidChunk), errors.Is(err, record.ErrZeroedChunk):
		return false, nil
	}
	return false, err
}

// newLogReader calls newReader, whose log number type pebble keeps
// internal, with num.
func newLogReader[N ~uint64](newReader func(io.Reader, N) *record.Reader, r io.Reader, num uint64) *record.Reader {
	return newReader(r, N(num))
}
