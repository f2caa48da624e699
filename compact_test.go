package activitystore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fillDays appends perDay activities on each of days days from testBase,
// with a few users and types, and returns them newest first by ID.
func fillDays(t *testing.T, s *Store, days, perDay int) []ID {
	t.Helper()
	var acts []Activity
	for d := range days {
		for i := range perDay {
			at := testBase.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute)
			a := act(fmt.Sprintf("t%d", i%3), fmt.Sprintf("u%d", i%5), at)
			if i%7 == 0 {
				a.UserID = ""
			}
			a.APICall = "GET /x"
			a.Resource = fmt.Sprintf("r/%d", i%4)
			acts = append(acts, a)
		}
	}
	return mustAppend(t, s, acts...)
}

func TestCompactArchivesAndQueriesMatch(t *testing.T) {
	defer func(n int) { archiveBlockBytes = n }(archiveBlockBytes)
	archiveBlockBytes = 2000
	s, dir, clock := openTest(t, &Options{ColdAfter: 24 * time.Hour})
	ctx := context.Background()
	clock.Set(testBase.Add(6 * 24 * time.Hour))
	fillDays(t, s, 5, 200)
	clock.Set(testBase.Add(5*24*time.Hour + 12*time.Hour))
	before := snapshotQueries(t, s)
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, st.Archives)
	require.Equal(t, 1000, st.Activities)
	require.Equal(t, before, snapshotQueries(t, s))
	require.NoError(t, s.Verify(ctx))

	// Reopen: the same answers from the archives.
	require.NoError(t, s.Close())
	s2, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour, ColdAfter: 24 * time.Hour})
	require.NoError(t, err)
	defer s2.Close()
	require.Equal(t, before, snapshotQueries(t, s2))
	require.NoError(t, s2.Verify(ctx))
}

// snapshotQueries runs a fixed set of queries and returns their answers as
// text.
func snapshotQueries(t *testing.T, s *Store) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	qs := map[string]*Query{
		"all":      s.Query().Limit(MaxLimit),
		"t1":       s.Query().Types("t1").Limit(300),
		"u2":       s.Query().Users("u2").Limit(50).Skip(30),
		"sys":      s.Query().System().Limit(1000),
		"r2t0":     s.Query().Resources("r/2").Types("t0").Limit(1000),
		"range":    s.Query().Since(testBase.Add(30 * time.Hour)).Until(testBase.Add(80 * time.Hour)).Limit(1000),
		"skipdeep": s.Query().Skip(650).Limit(100),
	}
	for _, name := range []string{"all", "t1", "u2", "sys", "r2t0", "range", "skipdeep"} {
		q := qs[name]
		p, err := q.All(ctx)
		require.NoError(t, err)
		n, err := q.Count(ctx)
		require.NoError(t, err)
		out = append(out, fmt.Sprintf("%s count=%d", name, n))
		for _, a := range p.Activities {
			b, err := a.MarshalJSON()
			require.NoError(t, err)
			out = append(out, string(b))
		}
	}
	return out
}
