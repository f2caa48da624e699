package activitystore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAfterTornLog opens a store whose pebble log ends inside a record
// and is followed by a newer, empty log, as a failed write of the log can
// leave it: pebble alone refuses it; Open removes the empty log and opens
// with every batch but the torn one, which verifies clean. A newer log that
// holds a record is kept, and the error stays.
func TestOpenAfterTornLog(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, nil)
	var batches [][]ID
	for b := range 5 {
		var acts []Activity
		for i := range 10 {
			a := act("t", fmt.Sprintf("u%d", i), testBase.Add(47*time.Hour+time.Duration(b*10+i)*time.Second))
			a.Details = []byte(fmt.Sprintf(`{"pad":%q}`, slices.Repeat([]byte("x"), 300)))
			acts = append(acts, a)
		}
		batches = append(batches, mustAppend(t, s, acts...))
	}
	// The store as a crash would leave it: its log holds the batches.
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	require.NoError(t, s.Close())

	db := filepath.Join(crashed, "db")
	logs, err := filepath.Glob(filepath.Join(db, "*.log"))
	require.NoError(t, err)
	slices.Sort(logs)
	newest := logs[len(logs)-1]
	fi, err := os.Stat(newest)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(newest, fi.Size()-100), "the last batch torn")
	var num int
	_, err = fmt.Sscanf(filepath.Base(newest), "%d.log", &num)
	require.NoError(t, err)
	next := filepath.Join(db, fmt.Sprintf("%06d.log", num+1))
	require.NoError(t, os.WriteFile(next, nil, 0o644))

	saved := t.TempDir()
	copyDir(t, crashed, saved)
	_, err = pebble.Open(db, &pebble.Options{Logger: quietLogger{}})
	require.ErrorContains(t, err, "error when replaying WAL", "pebble alone refuses it")

	s2, err := Open(crashed, &Options{Now: clock.Now, SealEvery: time.Hour})
	require.NoError(t, err)
	_, err = os.Stat(next)
	assert.ErrorIs(t, err, os.ErrNotExist, "the empty log is gone")
	for _, ids := range batches[:4] {
		for _, id := range ids {
			_, err := s2.Get(ctx, id)
			require.NoError(t, err)
		}
	}
	for _, id := range batches[4] {
		_, err := s2.Get(ctx, id)
		require.ErrorIs(t, err, ErrNotFound, "the torn batch is not there")
	}
	require.NoError(t, s2.Verify(ctx))
	require.NoError(t, s2.Close())

	// A newer log that holds a record is not removed.
	f, err := os.Create(filepath.Join(saved, "db", filepath.Base(next)))
	require.NoError(t, err)
	w := record.NewWriter(f)
	rw, err := w.Next()
	require.NoError(t, err)
	_, err = rw.Write([]byte("a record"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	_, err = Open(saved, &Options{Now: clock.Now, SealEvery: time.Hour})
	require.ErrorContains(t, err, "error when replaying WAL")
	_, err = os.Stat(filepath.Join(saved, "db", filepath.Base(next)))
	assert.NoError(t, err, "kept")
}
