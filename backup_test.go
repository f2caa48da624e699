package activitystore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackupWhileWriting backs up a store with archived, sealed and open
// windows while writers append, then opens the copy: Verify is clean, every
// activity acknowledged before the backup began is there, every activity of
// the copy is the source's, and the queries on what the writers did not
// touch give the source's answers.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{ColdAfter: 3 * 24 * time.Hour})
	clock.Set(testBase.Add(10 * 24 * time.Hour))
	fillDays(t, s, 10, 100)
	require.NoError(t, s.Compact(ctx))
	require.NoError(t, s.sealAll())
	fillDays(t, s, 1, 7) // an open window again, in day 0 (archived) too
	before := typedQueries(t, s)

	var acked sync.Map // ID -> true, acknowledged by the writers
	var ackedBefore []ID
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				at := testBase.Add(time.Duration(9*24+w)*time.Hour + time.Duration(i)*time.Second)
				ids, err := s.Append(ctx, act("during", fmt.Sprintf("w%d", w), at))
				if err != nil {
					t.Error(err)
					return
				}
				acked.Store(ids[0], true)
				n.Add(1)
			}
		})
	}
	for n.Load() < 50 { // the writers are going
		time.Sleep(time.Millisecond)
	}
	acked.Range(func(k, _ any) bool { ackedBefore = append(ackedBefore, k.(ID)); return true })
	dir := filepath.Join(t.TempDir(), "backup")
	require.NoError(t, s.Backup(ctx, dir))
	close(stop)
	wg.Wait()
	require.Greater(t, n.Load(), int64(len(ackedBefore)), "the writers went on during the backup")

	b, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour, ColdAfter: 3 * 24 * time.Hour, MustExist: true})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Verify(ctx))
	for _, id := range ackedBefore {
		_, err := b.Get(ctx, id)
		require.NoError(t, err, "acknowledged before the backup")
	}
	for a, err := range b.Query().Types("during").Iter(ctx) {
		require.NoError(t, err)
		_, ok := acked.Load(a.ID)
		require.True(t, ok, "%s is in the copy but was never acknowledged", a.ID)
	}
	// The writers' type aside, the copy answers as the source did.
	require.Equal(t, before, typedQueries(t, b))
	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.Positive(t, st.Archives)

	// Not into a folder that holds something.
	require.ErrorContains(t, s.Backup(ctx, dir), "not empty")
	// A backup of the backup, while it is open, opens too.
	dir2 := filepath.Join(t.TempDir(), "b2")
	require.NoError(t, b.Backup(ctx, dir2))
	_, err = os.Stat(filepath.Join(dir2, "db"))
	require.NoError(t, err)
}

// typedQueries returns the answers of queries on the types fillDays
// writes: pages, counts and counts by user, over all time and over one day.
func typedQueries(t *testing.T, s *Store) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, typ := range []string{"t0", "t1", "t2"} {
		for _, q := range []*Query{s.Query().Types(typ).Limit(1000), s.Query().Types(typ).Since(testBase.Add(24 * time.Hour)).Until(testBase.Add(48 * time.Hour))} {
			p, err := q.All(ctx)
			require.NoError(t, err)
			for _, a := range p.Activities {
				out = append(out, a.ID.String()+" "+a.UserID+" "+string(a.Details))
			}
			n, err := q.Count(ctx)
			require.NoError(t, err)
			vs, err := q.CountBy(ctx, "user_id")
			require.NoError(t, err)
			out = append(out, fmt.Sprint(n, vs))
		}
	}
	return out
}

// TestBackupFolder checks that a backup into a folder that exists and is
// empty works, and that a backup that fails leaves that folder, and a
// backup already in it, as they were.
func TestBackupFolder(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, nil)
	clock.Set(testBase.Add(3 * 24 * time.Hour))
	fillDays(t, s, 2, 20)
	dir := t.TempDir() // exists, empty
	require.NoError(t, s.Backup(ctx, dir))
	// Into the same folder again: refused, the first backup untouched.
	require.ErrorContains(t, s.Backup(ctx, dir), "not empty")
	b, err := Open(dir, &Options{Now: clock.Now, MustExist: true})
	require.NoError(t, err)
	require.NoError(t, b.Verify(ctx))
	require.NoError(t, b.Close())
	// Two at once into one new folder: one works, the other is refused.
	two := filepath.Join(t.TempDir(), "two")
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- s.Backup(ctx, two) }()
	}
	e1, e2 := <-errs, <-errs
	require.True(t, (e1 == nil) != (e2 == nil), "%v, %v", e1, e2)
	b, err = Open(two, &Options{Now: clock.Now, MustExist: true})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Verify(ctx))
}
