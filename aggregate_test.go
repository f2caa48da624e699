package activitystore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTimeline(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour, ColdAfter: time.Hour})
	// Two per hour over 0:10..5:40, user u1 on the first of each pair.
	for h := range 6 {
		at := testBase.Add(time.Duration(h)*time.Hour + 10*time.Minute)
		mustAppend(t, s, act("t", "u1", at), act("t", "u2", at.Add(30*time.Minute)))
	}
	hours := func(q *Query, b time.Duration) []int {
		t.Helper()
		bs, err := q.Timeline(ctx, b)
		require.NoError(t, err)
		var n []int
		for i, x := range bs {
			if i > 0 {
				require.Equal(t, b, x.Start.Sub(bs[i-1].Start), "buckets are contiguous")
			}
			require.Zero(t, x.Start.UnixNano()%int64(b), "buckets start on multiples of the bucket")
			n = append(n, x.Count)
		}
		return n
	}
	check := func(name string) {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, []int{2, 2, 2, 2, 2, 2}, hours(s.Query(), time.Hour))
			require.Equal(t, []int{1, 1, 1, 1, 1, 1}, hours(s.Query().Users("u2"), time.Hour))
			require.Equal(t, []int{4, 4, 4}, hours(s.Query(), 2*time.Hour))
			require.Equal(t, []int{12}, hours(s.Query(), 24*time.Hour))
			// Cut buckets: Since at 0:30 drops the first activity, Until
			// at 2:15 the ones after it. Empty buckets inside a given range
			// are kept.
			require.Equal(t, []int{1, 2, 1}, hours(s.Query().Since(testBase.Add(30*time.Minute)).Until(testBase.Add(135*time.Minute)), time.Hour))
			require.Equal(t, []int{0, 0, 2, 2}, hours(s.Query().Since(testBase.Add(-2*time.Hour)).Until(testBase.Add(2*time.Hour)), time.Hour))
			// Minutes: the first 40 are 1 at 0:10, then zeros, 1 at 0:40.
			m := hours(s.Query().Until(testBase.Add(41*time.Minute)), time.Minute)
			require.Len(t, m, 31)
			require.Equal(t, 1, m[0])
			require.Equal(t, 1, m[30])
			require.Empty(t, hours(s.Query().Types("nope"), time.Hour))
			require.Empty(t, hours(s.Query().Since(testBase.Add(24*time.Hour)), time.Hour))
		})
	}
	check("hot")
	clock.Set(testBase.Add(10 * time.Hour))
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, st.Archives)
	check("archived")

	var qe *QueryError
	_, err = s.Query().Timeline(ctx, 0)
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "bucket", qe.Field)
	_, err = s.Query().Timeline(ctx, time.Millisecond) // 6h of ms buckets
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "bucket", qe.Field)
	_, err = s.Query().Since(testBase).Until(testBase.Add(-time.Hour)).Timeline(ctx, time.Hour)
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "until", qe.Field)
}

func TestCountBy(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, &Options{SegmentWidth: time.Hour})
	at := testBase
	add := func(typ, user string) {
		mustAppend(t, s, act(typ, user, at))
		at = at.Add(20 * time.Minute)
	}
	add("login", "ada")
	add("login", "bob")
	add("deploy", "ada")
	add("login", "ada")
	add("alert", "")
	got, err := s.Query().CountBy(ctx, "type")
	require.NoError(t, err)
	require.Equal(t, []ValueCount{{"login", 3}, {"alert", 1}, {"deploy", 1}}, got)
	got, err = s.Query().Types("login").CountBy(ctx, "user")
	require.NoError(t, err)
	require.Equal(t, []ValueCount{{"ada", 2}, {"bob", 1}}, got)
	// A time range that cuts the first window: 0:20 to 1:10.
	got, err = s.Query().Since(testBase.Add(20*time.Minute)).Until(testBase.Add(70*time.Minute)).CountBy(ctx, "user_id")
	require.NoError(t, err)
	require.Equal(t, []ValueCount{{"ada", 2}, {"bob", 1}}, got)
	got, err = s.Query().Types("nope").CountBy(ctx, "module")
	require.NoError(t, err)
	require.Empty(t, got)

	var qe *QueryError
	_, err = s.Query().CountBy(ctx, "details")
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "field", qe.Field)
}

// TestCountByFewMatches checks that CountBy for a filter with few matches in
// each window counts their values from their records, not from the bitmaps
// of every value of the field: counting one user's resources loads nothing
// of the other users' thousands of resources, and answers the same.
func TestCountByFewMatches(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	want := map[string]int{}
	for h := range 3 {
		var acts []Activity
		for i := range 3000 {
			a := act("t", fmt.Sprintf("u%d", i%50), testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Second))
			a.Resource = fmt.Sprintf("r-%d-%d", h, i)
			if i%500 == 7 {
				a.UserID, a.Resource = "light", fmt.Sprintf("mine-%d", i%3)
				want[a.Resource]++
			}
			acts = append(acts, a)
		}
		mustAppend(t, s, acts...)
	}
	clock.Set(testBase.Add(24 * time.Hour))
	require.NoError(t, SealDue(s, ctx))
	for _, tier := range []string{"sealed", "sealed, reopened"} {
		if tier == "sealed, reopened" {
			require.NoError(t, s.Close())
			s = reopenTest(t, s.dir, &Options{})
		}
		before, err := s.Stats(ctx)
		require.NoError(t, err)
		got, err := s.Query().Users("light").CountBy(ctx, "resource")
		require.NoError(t, err)
		after, err := s.Stats(ctx)
		require.NoError(t, err)
		m := map[string]int{}
		for _, vc := range got {
			m[vc.Value] = vc.Count
		}
		require.Equal(t, want, m, tier)
		require.Less(t, after.CacheBytes-before.CacheBytes, int64(64<<10), "%s: no field of 3000 resources per window loaded", tier)
	}
}
