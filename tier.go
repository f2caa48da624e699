package activitystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A tier is where archive files live: a folder (dirTier) or a bucket
// (s3Tier). Names are archive file names (archiveName); a tier keeps them
// under its own folder or prefix and touches nothing else.
type tier interface {
	// create starts a new object called name. It becomes visible under that
	// name only when commit returns nil.
	create(ctx context.Context, name string) (tierFile, error)
	// open opens object name for reading. A missing object gives an error
	// that errors.Is os.ErrNotExist.
	open(ctx context.Context, name string) (tierObject, error)
	// stat returns the size of object name as the tier holds it now,
	// bypassing any cache; a missing object gives os.ErrNotExist.
	stat(ctx context.Context, name string) (int64, error)
	// remove deletes object name; a missing one is no error.
	remove(ctx context.Context, name string) error
	// list returns the names in the tier, leftovers of creates included.
	list(ctx context.Context) ([]string, error)
	// where names object name for messages: a path or an s3:// address.
	where(name string) string
}

// A tierFile is an object being written.
type tierFile interface {
	Write(p []byte) (int, error)
	Sync() error
	// path is the local file being written, for messages.
	path() string
	// commit makes the object durable and visible under its name after
	// checking that the tier holds exactly the size bytes written.
	commit(ctx context.Context, size int64) error
	// abort removes what the object left behind; it is a no-op after a
	// successful commit.
	abort()
}

// A tierObject is an object open for reading.
type tierObject interface {
	readAt(ctx context.Context, p []byte, off int64) (int, error)
	size() int64
	close() error
}

// ctxReaderAt reads a tierObject as an io.ReaderAt under one context.
type ctxReaderAt struct {
	ctx context.Context
	o   tierObject
}

func (r ctxReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.o.readAt(r.ctx, p, off) }

// dirTier keeps archives as files in a folder of a vfs.FS. A file is
// written under name+".tmp", synced, renamed and the folder synced.
type dirTier struct {
	fs   vfs.FS
	dir  string
	hook func(step string)
}

func (t *dirTier) where(name string) string { return filepath.Join(t.dir, name) }

func (t *dirTier) create(_ context.Context, name string) (tierFile, error) {
	tmp := t.where(name) + ".tmp"
	f, err := t.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot create %s: %w", tmp, err)
	}
	return &dirFile{File: f, t: t, name: name, tmp: tmp}, nil
}

type dirFile struct {
	vfs.File
	t         *dirTier
	name, tmp string
	closed    bool
	done      bool
}

func (f *dirFile) path() string { return f.tmp }

func (f *dirFile) commit(_ context.Context, size int64) error {
	f.closed = true
	if err := f.File.Close(); err != nil {
		return fmt.Errorf("activitystore: cannot write %s: %w", f.tmp, err)
	}
	if st, err := f.t.fs.Stat(f.tmp); err != nil || st.Size() != size {
		if err == nil {
			err = fmt.Errorf("holds %d bytes, wrote %d", st.Size(), size)
		}
		return fmt.Errorf("activitystore: cannot check %s: %w", f.tmp, err)
	}
	final := f.t.where(f.name)
	if err := f.t.fs.Rename(f.tmp, final); err != nil {
		return fmt.Errorf("activitystore: cannot rename %s: %w", f.tmp, err)
	}
	f.tmp = final // abort now removes the final file
	f.t.step("renamed")
	if err := syncDir(f.t.fs, f.t.dir); err != nil {
		return err
	}
	f.t.step("dir-synced")
	f.done = true
	return nil
}

func (f *dirFile) abort() {
	if f.done {
		return
	}
	if !f.closed {
		f.File.Close()
	}
	f.t.fs.Remove(f.tmp)
}

func (t *dirTier) step(s string) {
	if t.hook != nil {
		t.hook(s)
	}
}

func (t *dirTier) open(_ context.Context, name string) (tierObject, error) {
	p := t.where(name)
	f, err := t.fs.Open(p, vfs.RandomReadsOption)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &dirObject{f: f, n: st.Size()}, nil
}

type dirObject struct {
	f vfs.File
	n int64
}

func (o *dirObject) readAt(_ context.Context, p []byte, off int64) (int, error) {
	return o.f.ReadAt(p, off)
}
func (o *dirObject) size() int64  { return o.n }
func (o *dirObject) close() error { return o.f.Close() }

func (t *dirTier) stat(_ context.Context, name string) (int64, error) {
	st, err := t.fs.Stat(t.where(name))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (t *dirTier) remove(_ context.Context, name string) error {
	if err := t.fs.Remove(t.where(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (t *dirTier) list(context.Context) ([]string, error) {
	if err := t.fs.MkdirAll(t.dir, 0o755); err != nil {
		return nil, fmt.Errorf("activitystore: cannot create %s: %w", t.dir, err)
	}
	names, err := t.fs.List(t.dir)
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot list %s: %w", t.dir, err)
	}
	return names, nil
}

// checkNode makes sure the store is opened with the node number of the IDs
// it has assigned: a store that changed its number would hold IDs of two
// nodes, whose folder and uniqueness no longer match. A store that has
// assigned no ID may take any number.
func (s *Store) checkNode() error {
	have, _, err := s.metaUint64(metaNode)
	if err != nil {
		return err
	}
	want := uint64(s.opts.Node)
	if have == want {
		return nil
	}
	if s.reservedSeq > 0 {
		return fmt.Errorf("%w: the store's IDs carry node number %d, not %d (Node)", ErrInvalidOptions, have, want)
	}
	return s.set(metaNode, binary.BigEndian.AppendUint64(nil, want))
}

// checkTier makes sure the store is opened with the archive location it
// was created with (or had when it first archived): a folder, or one
// bucket, prefix and node. Archive records name files, not locations, so a
// store opened with another would miss its archives or spread them over
// two places. A store without archives may move.
func (s *Store) checkTier() error {
	want := ""
	if t, ok := s.tier.(*s3Tier); ok {
		want = "s3://" + t.bucket + "/" + t.prefix
	}
	v, closer, err := s.db.Get(metaTier)
	have := ""
	switch {
	case err == nil:
		have = string(v)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return err
	}
	if have == want {
		return nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixArchive}, UpperBound: []byte{prefixArchive + 1}})
	if err != nil {
		return err
	}
	archived := it.First()
	if err := it.Close(); err != nil {
		return err
	}
	if archived {
		where := func(loc string) string {
			if loc == "" {
				return "a folder (ArchiveDir)"
			}
			return loc
		}
		return fmt.Errorf("%w: the store's archives are in %s, not %s", ErrInvalidOptions, where(have), where(want))
	}
	if want == "" {
		return s.db.Delete(metaTier, pebble.Sync)
	}
	return s.set(metaTier, []byte(want))
}
