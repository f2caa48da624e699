package activitystore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCountFromDescriptors checks that counting whole sealed windows by one
// counted field reads no bitmap and gives what the bitmaps give; that
// Verify checks those counts; and that other counts still read bitmaps.
func TestCountFromDescriptors(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, nil)
	clock.Set(testBase.Add(6 * 24 * time.Hour))
	fillDays(t, s, 5, 200)
	require.NoError(t, s.Close())
	s, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour})
	require.NoError(t, err)
	defer s.Close()

	loads := func() int64 {
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		return st.SegmentLoads
	}
	whole := func() *Query { return s.Query().Until(testBase.Add(4 * 24 * time.Hour)) } // days 0-3, sealed
	for _, q := range []*Query{
		whole().Types("t1"),
		whole().Types("t1", "t2", "t1", "nope"),
		whole().Modules("auth"),
		whole().Actions("login"),
		whole(),
	} {
		before := loads()
		n, err := q.Count(ctx)
		require.NoError(t, err)
		require.Equal(t, before, loads(), "no bitmap read")
		m := 0
		for _, err := range q.Iter(ctx) {
			require.NoError(t, err)
			m++
		}
		require.Equal(t, m, n)
		require.Positive(t, n)
	}
	before := loads()
	_, err = whole().Types("t1").Users("u1").Count(ctx)
	require.NoError(t, err)
	require.Greater(t, loads(), before, "two fields: the bitmaps")

	// A descriptor whose counts disagree with its bitmaps fails Verify.
	require.NoError(t, s.Verify(ctx))
	s.mu.Lock()
	for _, sl := range s.sealed {
		sl.counts[fieldType]["t1"]++
		break
	}
	s.mu.Unlock()
	err = s.Verify(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), `descriptor counts`)
}
