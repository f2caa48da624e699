package activitystore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/stretchr/testify/require"
)

// fault injects err into the operations of the store's file system that
// match, while it is on.
type fault struct {
	on    atomic.Bool
	match func(errorfs.Op) bool
	err   error
	hits  atomic.Int64
}

func (f *fault) String() string { return "fault" }

func (f *fault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || f.match == nil || !f.match(op) {
		return nil
	}
	f.hits.Add(1)
	return f.err
}

// ops matches the operations of the given kinds on paths that end with
// suffix.
func ops(suffix string, kinds ...errorfs.OpKind) func(errorfs.Op) bool {
	return func(op errorfs.Op) bool {
		for _, k := range kinds {
			if op.Kind == k && strings.HasSuffix(op.Path, suffix) {
				return true
			}
		}
		return false
	}
}

var (
	syncs  = []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}
	writes = []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}
	reads  = []errorfs.OpKind{errorfs.OpFileRead, errorfs.OpFileReadAt}
)

// faultyStore opens a store on a file system with f injected, ten days of
// activities in it, the first six archived and the rest sealed, and
// returns it with what it holds, as the queries of snapshotQueries show it.
func faultyStore(t *testing.T, f *fault, o Options) (*Store, string, *testClock, []string) {
	t.Helper()
	dir := t.TempDir()
	clock := &testClock{t: testBase.Add(11 * 24 * time.Hour)}
	o.FS = errorfs.Wrap(vfs.Default, f)
	o.Logger = silent{}
	o.Now = clock.Now
	o.SealEvery = time.Hour
	o.ColdAfter = 5 * 24 * time.Hour
	s, err := Open(dir, &o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	fillDays(t, s, 10, 100)
	require.NoError(t, s.Compact(context.Background()))
	require.NoError(t, s.sealAll())
	return s, dir, clock, snapshotQueries(t, s)
}

// reopen closes s (its error is returned) and opens dir again without
// faults, checks it, and returns it.
func reopen(t *testing.T, s *Store, dir string, clock *testClock) (*Store, error) {
	t.Helper()
	cerr := s.Close()
	s2, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour, ColdAfter: 5 * 24 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { s2.Close() })
	require.NoError(t, s2.Verify(context.Background()))
	return s2, cerr
}

// A failed write or sync of pebble's log fails that Append and makes every
// later write fail with ErrWriteFailed; reads go on, the failed batch is
// never shown, and a reopen keeps every acknowledged activity and holds the
// failed batch whole or not at all.
func TestDiskFaultLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kinds []errorfs.OpKind
		err   error
	}{
		{"sync EIO", syncs, syscall.EIO},
		{"write ENOSPC", writes, syscall.ENOSPC},
		{"write EIO", writes, syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := &fault{match: ops(".log", tc.kinds...), err: tc.err}
			s, dir, clock, _ := faultyStore(t, f, Options{})
			at := testBase.Add(10*24*time.Hour + time.Hour)
			acked := mustAppend(t, s, act("ok", "u1", at))
			before := snapshotQueries(t, s)

			f.on.Store(true)
			batch := []Activity{act("lost", "u1", at.Add(time.Minute)), act("lost", "u2", at.Add(2*time.Minute))}
			_, err := s.Append(ctx, batch...)
			require.ErrorIs(t, err, ErrWriteFailed)
			require.ErrorIs(t, err, tc.err)
			require.Positive(t, f.hits.Load())
			f.on.Store(false)

			// Sticky: every write fails the same way, the faults gone.
			_, err = s.Append(ctx, act("after", "u1", at.Add(3*time.Minute)))
			require.ErrorIs(t, err, ErrWriteFailed)
			clock.Set(testBase.Add(30 * 24 * time.Hour))
			require.ErrorIs(t, s.Compact(ctx), ErrWriteFailed)
			require.ErrorIs(t, s.DropBefore(ctx, testBase.Add(24*time.Hour)), ErrWriteFailed)
			require.ErrorIs(t, s.sealAll(), ErrWriteFailed)
			clock.Set(testBase.Add(11 * 24 * time.Hour))

			// Reads go on and show what was acknowledged, nothing more.
			require.Equal(t, before, snapshotQueries(t, s))
			n, err := s.Query().Types("lost").Count(ctx)
			require.NoError(t, err)
			require.Zero(t, n)

			s2, cerr := reopen(t, s, dir, clock)
			require.ErrorIs(t, cerr, ErrWriteFailed)
			got, err := s2.Get(ctx, acked[0])
			require.NoError(t, err)
			require.Equal(t, "ok", got.Type)
			n, err = s2.Query().Types("lost").Count(ctx)
			require.NoError(t, err)
			require.Contains(t, []int{0, len(batch)}, n, "the failed batch is whole or absent")
			n, err = s2.Query().Types("after").Count(ctx)
			require.NoError(t, err)
			require.Zero(t, n)
			if n, _ := s2.Query().Types("lost").Count(ctx); n == 0 {
				require.Equal(t, before, snapshotQueries(t, s2))
			}
			// The reopened store takes writes again.
			mustAppend(t, s2, act("again", "u1", at.Add(4*time.Minute)))
		})
	}
}

// DropBefore whose log sync fails drops the windows from what queries see
// (pebble applied its batch), and the reopened store has dropped them whole
// or not at all, its files kept for the case it did not; a failed
// removal of an archive file after the commit is only logged, and the next
// Open removes the file.
func TestDiskFaultDropBefore(t *testing.T) {
	ctx := context.Background()
	cut := testBase.Add(3 * 24 * time.Hour)
	count := func(s *Store) int {
		n, err := s.Query().Until(cut).Count(ctx)
		require.NoError(t, err)
		return n
	}

	t.Run("log sync", func(t *testing.T) {
		f := &fault{match: ops(".log", syncs...), err: syscall.EIO}
		s, dir, clock, before := faultyStore(t, f, Options{})
		f.on.Store(true)
		require.ErrorIs(t, s.DropBefore(ctx, cut), ErrWriteFailed)
		f.on.Store(false)
		// Pebble applied the batch: reads see the windows gone.
		require.Zero(t, count(s))
		s2, _ := reopen(t, s, dir, clock)
		if n := count(s2); n != 0 {
			require.Equal(t, 300, n)
			require.Equal(t, before, snapshotQueries(t, s2))
		}
	})

	t.Run("archive removal", func(t *testing.T) {
		f := &fault{match: ops(".arc", errorfs.OpRemove), err: syscall.EIO}
		s, dir, clock, _ := faultyStore(t, f, Options{})
		f.on.Store(true)
		require.NoError(t, s.DropBefore(ctx, cut))
		require.Positive(t, f.hits.Load())
		require.Zero(t, count(s))
		left, err := filepath.Glob(filepath.Join(dir, "archive", "*.arc"))
		require.NoError(t, err)
		require.Len(t, left, 6, "the three dropped files are still there")
		f.on.Store(false)
		s2, _ := reopen(t, s, dir, clock)
		require.Zero(t, count(s2))
		left, err = filepath.Glob(filepath.Join(dir, "archive", "*.arc"))
		require.NoError(t, err)
		require.Len(t, left, 3)
	})
}

// With NoSync an Append does not wait for the log, so a failed write of it
// surfaces at the next synchronous commit (sealing, here) as ErrWriteFailed.
// The activities NoSync acknowledged in between were never written: the
// reopened store, whole and consistent, may lack them.
func TestDiskFaultLogNoSync(t *testing.T) {
	ctx := context.Background()
	f := &fault{match: ops(".log", writes...), err: syscall.EIO}
	s, dir, clock, before := faultyStore(t, f, Options{NoSync: true})
	at := testBase.Add(10*24*time.Hour + time.Hour)
	f.on.Store(true)
	mustAppend(t, s, act("nosync", "u1", at), act("nosync", "u2", at.Add(time.Second)))
	require.ErrorIs(t, s.sealAll(), ErrWriteFailed)
	require.Positive(t, f.hits.Load())
	_, err := s.Append(ctx, act("after", "u1", at.Add(time.Minute)))
	require.ErrorIs(t, err, ErrWriteFailed)
	f.on.Store(false)
	s2, cerr := reopen(t, s, dir, clock)
	require.ErrorIs(t, cerr, ErrWriteFailed)
	n, err := s2.Query().Types("nosync").Count(ctx)
	require.NoError(t, err)
	require.Contains(t, []int{0, 2}, n)
	if n == 0 {
		require.Equal(t, before, snapshotQueries(t, s2))
	}
}

// Faults in pebble's tables (flushes, compactions, reads) and in the
// archives come back as errors of the call that met them; the store keeps
// working once they stop, and loses nothing.
func TestDiskFaultTablesAndArchives(t *testing.T) {
	ctx := context.Background()
	eio := syscall.EIO

	t.Run("archive write", func(t *testing.T) {
		f := &fault{match: ops(".arc.tmp", writes...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{blockBytes: 2000})
		f.on.Store(true)
		clock.Set(testBase.Add(13 * 24 * time.Hour))
		err := s.Compact(ctx)
		require.ErrorIs(t, err, eio)
		require.Contains(t, err.Error(), ".arc.tmp")
		require.NotErrorIs(t, err, ErrWriteFailed)
		require.Equal(t, before, snapshotQueries(t, s))
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, 6, st.Archives)
		f.on.Store(false)
		require.NoError(t, s.Compact(ctx))
		st, err = s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, 8, st.Archives)
		require.Equal(t, before, snapshotQueries(t, s))
		noTemporaries(t, dir)
		s2, cerr := reopen(t, s, dir, clock)
		require.NoError(t, cerr)
		require.Equal(t, before, snapshotQueries(t, s2))
	})

	t.Run("archive sync", func(t *testing.T) {
		f := &fault{match: ops(".arc.tmp", syncs...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		f.on.Store(true)
		clock.Set(testBase.Add(13 * 24 * time.Hour))
		require.ErrorIs(t, s.Compact(ctx), eio)
		require.Equal(t, before, snapshotQueries(t, s))
		noTemporaries(t, dir)
		f.on.Store(false)
		s2, cerr := reopen(t, s, dir, clock)
		require.NoError(t, cerr)
		require.Equal(t, before, snapshotQueries(t, s2))
		require.NoError(t, s2.Compact(ctx))
		require.Equal(t, before, snapshotQueries(t, s2))
	})

	t.Run("archive folder sync", func(t *testing.T) {
		f := &fault{match: ops(string(filepath.Separator)+"archive", syncs...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		f.on.Store(true)
		clock.Set(testBase.Add(13 * 24 * time.Hour))
		err := s.Compact(ctx)
		require.ErrorIs(t, err, eio)
		require.Positive(t, f.hits.Load())
		require.Equal(t, before, snapshotQueries(t, s))
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, 6, st.Archives, "the windows stay in pebble")
		f.on.Store(false)
		s2, cerr := reopen(t, s, dir, clock)
		require.NoError(t, cerr)
		require.Equal(t, before, snapshotQueries(t, s2))
	})

	t.Run("log sync during Compact", func(t *testing.T) {
		f := &fault{match: ops(".log", syncs...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		clock.Set(testBase.Add(13 * 24 * time.Hour))
		f.on.Store(true)
		require.ErrorIs(t, s.Compact(ctx), ErrWriteFailed)
		require.Equal(t, before, snapshotQueries(t, s), "reads go on as before")
		// A backup now would miss what the log lost: refused, nothing left.
		bdir := filepath.Join(t.TempDir(), "b")
		require.ErrorIs(t, s.Backup(ctx, bdir), ErrWriteFailed)
		_, err := os.Stat(bdir)
		require.ErrorIs(t, err, os.ErrNotExist)
		f.on.Store(false)
		s2, _ := reopen(t, s, dir, clock) // Verify is clean: no record points to a missing file
		require.Equal(t, before, snapshotQueries(t, s2))
		noTemporaries(t, dir)
	})

	t.Run("log write while replacing an archive, then Compact again", func(t *testing.T) {
		f := &fault{match: ops(".log", writes...), err: eio}
		s, dir, clock, _ := faultyStore(t, f, Options{})
		// A late arrival into day 1, archived: its archive is replaced.
		late := act("late", "u1", testBase.Add(24*time.Hour+time.Minute))
		mustAppend(t, s, late)
		before := snapshotQueries(t, s)
		f.on.Store(true)
		require.ErrorIs(t, s.Compact(ctx), ErrWriteFailed)
		// A second Compact must not take the old archive, which the disk
		// may still point to, for an orphan.
		require.ErrorIs(t, s.Compact(ctx), ErrWriteFailed)
		f.on.Store(false)
		s2, _ := reopen(t, s, dir, clock) // Verify: no record points to a missing file
		require.Equal(t, before, snapshotQueries(t, s2))
		p, err := s2.Query().Types("late").All(ctx)
		require.NoError(t, err)
		require.Len(t, p.Activities, 1, "the acknowledged late arrival")
	})

	t.Run("archive read", func(t *testing.T) {
		f := &fault{match: ops(".arc", reads...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		// A fresh store, so that nothing of the archives is cached.
		s2, cerr := reopenFaulty(t, s, dir, clock, f)
		require.NoError(t, cerr)
		f.on.Store(true)
		_, err := s2.Query().Until(testBase.Add(3 * 24 * time.Hour)).All(ctx)
		require.ErrorIs(t, err, eio)
		require.Contains(t, err.Error(), ".arc")
		// The hot tier answers meanwhile.
		p, err := s2.Query().Since(testBase.Add(9 * 24 * time.Hour)).All(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, p.Activities)
		f.on.Store(false)
		require.Equal(t, before, snapshotQueries(t, s2))
	})

	t.Run("table write", func(t *testing.T) {
		f := &fault{match: ops(".sst", append(writes, syncs...)...), err: eio}
		s, dir, clock, _ := faultyStore(t, f, Options{MemTableSize: 1 << 20})
		f.on.Store(true)
		at := testBase.Add(10*24*time.Hour + time.Hour)
		var acked []ID
		for i := range 20 {
			// About 2 MB: memtables fill and their flushes fail.
			batch := make([]Activity, 100)
			for k := range batch {
				batch[k] = act("big", "u1", at.Add(time.Duration(i*100+k)*time.Millisecond))
				batch[k].Details = []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
			}
			acked = append(acked, mustAppend(t, s, batch...)...)
		}
		require.Positive(t, f.hits.Load(), "no flush was tried")
		n, err := s.Query().Types("big").Count(ctx)
		require.NoError(t, err)
		require.Equal(t, len(acked), n)
		before := snapshotQueries(t, s)
		f.on.Store(false)
		s2, cerr := reopen(t, s, dir, clock)
		require.NoError(t, cerr)
		require.Equal(t, before, snapshotQueries(t, s2))
	})

	t.Run("table read", func(t *testing.T) {
		f := &fault{match: ops(".sst", reads...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		s2, cerr := reopenFaulty(t, s, dir, clock, f)
		require.NoError(t, cerr)
		f.on.Store(true)
		_, err := s2.Query().Since(testBase.Add(6 * 24 * time.Hour)).All(ctx)
		require.ErrorIs(t, err, eio)
		_, err = s2.Query().Since(testBase.Add(6*24*time.Hour)).CountBy(ctx, "user_id")
		require.Error(t, err)
		// An append to a sealed window reads its segment, sealing reads
		// records: each fails or works whole.
		late := act("late", "u9", testBase.Add(7*24*time.Hour+time.Minute))
		ids, aerr := s2.Append(ctx, late)
		require.NotErrorIs(t, aerr, ErrWriteFailed)
		serr := s2.sealAll()
		require.NotErrorIs(t, serr, ErrWriteFailed)
		require.True(t, aerr != nil || serr != nil, "no fault was met")
		f.on.Store(false)
		require.NoError(t, s2.sealAll())
		n, err := s2.Query().Types("late").Count(ctx)
		require.NoError(t, err)
		if aerr == nil {
			require.Equal(t, 1, n)
			_, err := s2.Get(ctx, ids[0])
			require.NoError(t, err)
		} else {
			require.Zero(t, n)
			require.Equal(t, before, snapshotQueries(t, s2))
		}
		require.NoError(t, s2.Verify(ctx))
	})

	t.Run("open", func(t *testing.T) {
		f := &fault{match: ops("", append(reads, errorfs.OpOpen)...), err: eio}
		s, dir, clock, before := faultyStore(t, f, Options{})
		require.NoError(t, s.Close())
		f.on.Store(true)
		_, err := Open(dir, &Options{FS: errorfs.Wrap(vfs.Default, f), Now: clock.Now})
		require.ErrorIs(t, err, eio)
		f.on.Store(false)
		// The failed Open left the directory unlocked and whole.
		s2, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour, ColdAfter: 5 * 24 * time.Hour})
		require.NoError(t, err)
		defer s2.Close()
		require.Equal(t, before, snapshotQueries(t, s2))
	})
}

// reopenFaulty closes s and opens dir again on f's file system, f off.
func reopenFaulty(t *testing.T, s *Store, dir string, clock *testClock, f *fault) (*Store, error) {
	t.Helper()
	cerr := s.Close()
	s2, err := Open(dir, &Options{FS: errorfs.Wrap(vfs.Default, f), Logger: silent{}, Now: clock.Now, SealEvery: time.Hour, ColdAfter: 5 * 24 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { s2.Close() })
	return s2, cerr
}

// noTemporaries fails if the archive folder holds a temporary file.
func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	tmps, err := filepath.Glob(filepath.Join(dir, "archive", "*.tmp"))
	require.NoError(t, err)
	require.Empty(t, tmps)
}

// silent drops pebble's log lines of the faults the tests inject.
type silent struct{}

func (silent) Infof(string, ...any)  {}
func (silent) Errorf(string, ...any) {}
func (silent) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// Writers appending at once, in both modes, while the log starts failing:
// no panic and no hang; each Append is acknowledged or fails with
// ErrWriteFailed; Close returns; the reopened store holds every
// acknowledged activity (with Sync) and verifies clean.
func TestDiskFaultLogConcurrent(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			ctx := context.Background()
			f := &fault{match: ops(".log", append(writes, syncs...)...), err: syscall.EIO}
			s, dir, clock, _ := faultyStore(t, f, Options{NoSync: noSync})
			at := testBase.Add(10*24*time.Hour + time.Hour)
			var mu sync.Mutex
			var acked []ID
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := range 300 {
						if w == 0 && i == 100 {
							f.on.Store(true)
						}
						a := act("c", fmt.Sprintf("w%d", w), at.Add(time.Duration(w*1000+i)*time.Millisecond))
						a.Details = []byte(`{"pad":"` + strings.Repeat("x", 200) + `"}`)
						ids, err := s.Append(ctx, a)
						if err != nil {
							if !errors.Is(err, ErrWriteFailed) {
								t.Errorf("append: %v", err)
							}
							return
						}
						mu.Lock()
						acked = append(acked, ids...)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if noSync {
				// The log is written in the background: a synced commit
				// (the sealer's) writes what is left of it.
				require.ErrorIs(t, s.sealAll(), ErrWriteFailed)
			}
			require.ErrorIs(t, s.WriteErr(), ErrWriteFailed, "the failure was seen")
			f.on.Store(false)
			s2, cerr := reopen(t, s, dir, clock)
			require.ErrorIs(t, cerr, ErrWriteFailed)
			if !noSync {
				for _, id := range acked {
					_, err := s2.Get(ctx, id)
					require.NoError(t, err, "acknowledged")
				}
			}
		})
	}
}
