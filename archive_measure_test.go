package activitystore_test

import (
	"context"
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/activitystore/activitystore"
)

var layoutN = flag.Int("layout.n", 20_000, "activities TestArchiveLayouts measures")

// TestArchiveLayouts compares the archive block layouts on generated data
// and checks that the archive the store writes, without copy blocks, is the
// smallest of them; it also logs the size with copy blocks. Run with
// -layout.n 1000000 -v for the figures at scale.
func TestArchiveLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("measures compression")
	}
	ctx := context.Background()
	var all []activitystore.Activity
	open := func(copies int) *activitystore.Store {
		s, err := activitystore.Open(t.TempDir(), &activitystore.Options{NoSync: true, Now: benchNow, SealEvery: time.Hour, ColdAfter: time.Nanosecond, UserCopies: copies})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	s, withCopies := open(-1), open(0)
	for _, batch := range genBatches(*layoutN, 1000, 1) {
		ids, err := s.Append(ctx, batch...)
		require.NoError(t, err)
		_, err = withCopies.Append(ctx, batch...)
		require.NoError(t, err)
		for i := range batch {
			batch[i].ID = ids[i]
		}
		all = append(all, batch...)
	}
	require.NoError(t, withCopies.Compact(ctx))
	cst, err := withCopies.Stats(ctx)
	require.NoError(t, err)
	slices.SortFunc(all, func(a, b activitystore.Activity) int { return b.ID.Compare(a.ID) })
	start := time.Now()
	require.NoError(t, s.Compact(ctx))
	el := time.Since(start)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, len(all), st.ArchivedActivities)
	ixBytes, err := activitystore.ArchiveIndexBytes(s)
	require.NoError(t, err)

	ls, err := activitystore.MeasureLayouts(all, 256<<10)
	require.NoError(t, err)
	raw := float64(ls.JSONLines)
	t.Logf("%d activities, %.1f MB of JSON lines (%.0f B/activity)", len(all), raw/1e6, raw/float64(len(all)))
	t.Logf("JSON lines, zstd 1 MiB blocks:       %.4f of raw", float64(ls.JSONLinesZstd)/raw)
	t.Logf("blocks, rows:                         %.4f (+ index %.4f = %.4f)", float64(ls.Rows)/raw, float64(ixBytes)/raw, float64(ls.Rows+ixBytes)/raw)
	t.Logf("blocks, rows, 16 KiB + dictionary:    %.4f (+ index = %.4f)", float64(ls.RowsDict)/raw, float64(ls.RowsDict+ixBytes)/raw)
	t.Logf("blocks, columns, one frame per block: %.4f (+ index = %.4f)", float64(ls.ColumnsOneFrame)/raw, float64(ls.ColumnsOneFrame+ixBytes)/raw)
	t.Logf("blocks, columns, frame per column:    %.4f (+ index = %.4f)", float64(ls.Columns)/raw, float64(ls.Columns+ixBytes)/raw)
	t.Logf("blocks, columns, 16 KiB + dictionary: %.4f (+ index = %.4f)", float64(ls.ColumnsDict)/raw, float64(ls.ColumnsDict+ixBytes)/raw)
	t.Logf("archive files written by Compact:     %.4f of raw, %.1f B/activity (index %.1f B/activity)", float64(st.ArchiveBytes)/raw, float64(st.ArchiveBytes)/float64(len(all)), float64(ixBytes)/float64(len(all)))
	parts, err := activitystore.ArchiveParts(s)
	require.NoError(t, err)
	for _, k := range []string{"head", "dirs", "groups", "chunks"} {
		t.Logf("  index part %-8s %5.2f B/activity", k, float64(parts[k])/float64(len(all)))
	}
	t.Logf("compaction: %.0f activities/s (%s)", float64(len(all))/el.Seconds(), el.Round(time.Millisecond))
	t.Logf("with copy blocks (UserCopies 64):     %.4f of raw, %.1f B/activity", float64(cst.ArchiveBytes)/raw, float64(cst.ArchiveBytes)/float64(len(all)))
	cparts, err := activitystore.ArchiveParts(withCopies)
	require.NoError(t, err)
	t.Logf("  of which copy blocks %.1f B/activity", float64(cparts["copies"])/float64(len(all)))
	require.Less(t, ls.Columns, ls.Rows, "columns should beat rows")
	require.Less(t, st.ArchiveBytes, ls.JSONLinesZstd, "archives should beat zstd of JSON lines")
}
