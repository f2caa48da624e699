package activitystore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// TestCompactArchivesAndQueriesMatch compacts and checks that the answers
// stay the same, from archives of the current format and (read by the
// current version after a reopen) of format 2.
func TestCompactArchivesAndQueriesMatch(t *testing.T) {
	for _, format2 := range []bool{false, true} {
		t.Run(fmt.Sprint("format2=", format2), func(t *testing.T) { testCompactArchivesAndQueriesMatch(t, format2) })
	}
}

func testCompactArchivesAndQueriesMatch(t *testing.T, format2 bool) {
	s, dir, clock := openTest(t, &Options{ColdAfter: 24 * time.Hour, blockBytes: 2000, format2: format2})
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

func TestCompactOptionsInvalid(t *testing.T) {
	for _, o := range []Options{
		{ColdAfter: -time.Second},
		{RetainFor: -time.Second},
		{CacheBytes: -1},
		{CompactEvery: -time.Second},
	} {
		_, err := Open(t.TempDir(), &o)
		require.ErrorIs(t, err, ErrInvalidOptions, "%+v", o)
	}
}

func TestCompactOptions(t *testing.T) {
	ctx := context.Background()
	days := func(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
	tests := []struct {
		name         string
		opts         Options
		wantArchives int
		wantDays     int // windows left, hot or archived
	}{
		{"default ColdAfter keeps the last week hot", Options{}, 3, 10},
		{"ColdAfter 1 day", Options{ColdAfter: days(1)}, 9, 10},
		{"RetainFor 5 days drops older windows", Options{ColdAfter: days(1), RetainFor: days(5)}, 4, 5},
		{"RetainFor shorter than ColdAfter", Options{ColdAfter: days(3), RetainFor: days(2)}, 0, 2},
		{"custom ArchiveDir", Options{ColdAfter: days(2), ArchiveDir: "elsewhere"}, 8, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.ArchiveDir != "" {
				o.ArchiveDir = t.TempDir()
			}
			s, dir, clock := openTest(t, &o)
			clock.Set(testBase.Add(days(10)))
			fillDays(t, s, 10, 30)
			require.NoError(t, s.Compact(ctx))
			st, err := s.Stats(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.wantArchives, st.Archives)
			require.Equal(t, tc.wantDays*30, st.Activities)
			require.Equal(t, tc.wantDays-tc.wantArchives, st.Segments)
			require.NoError(t, s.Verify(ctx))
			arcDir := filepath.Join(dir, "archive")
			if o.ArchiveDir != "" {
				arcDir = o.ArchiveDir
				entries, err := os.ReadDir(filepath.Join(dir, "archive"))
				require.True(t, os.IsNotExist(err) || len(entries) == 0, "nothing in the default folder")
			}
			entries, err := os.ReadDir(arcDir)
			require.NoError(t, err)
			require.Len(t, entries, tc.wantArchives)
			// Oldest activity left: the retention boundary is whole windows.
			all, err := s.Query().Limit(MaxLimit).All(ctx)
			require.NoError(t, err)
			require.Len(t, all.Activities, tc.wantDays*30)
			oldest := all.Activities[len(all.Activities)-1].Time
			require.Equal(t, testBase.Add(days(10-tc.wantDays)), oldest)
		})
	}
}

func TestCacheBytesBoundsMemory(t *testing.T) {
	ctx := context.Background()
	const limit = 64 << 10
	s, _, clock := openTest(t, &Options{ColdAfter: time.Hour, CacheBytes: limit, blockBytes: 4000})
	clock.Set(testBase.Add(20 * 24 * time.Hour))
	ids := fillDays(t, s, 20, 300)
	require.NoError(t, s.Compact(ctx))
	for _, id := range ids {
		_, err := s.Get(ctx, id)
		require.NoError(t, err)
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, st.CacheBytes, int64(limit))
	}
	n, err := s.Query().Types("t1").Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 20*100, n)
}

func TestDropBefore(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	tests := []struct {
		name     string
		cut      time.Duration // after testBase
		wantLeft int           // activities
	}{
		{"before everything", -day, 600},
		{"on a window boundary", 2 * day, 400},
		{"inside a window keeps it whole", 2*day + 12*time.Hour, 400},
		{"after everything", 30 * day, 0},
	}
	for _, archived := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/archived=%v", tc.name, archived), func(t *testing.T) {
				s, dir, clock := openTest(t, &Options{ColdAfter: time.Hour})
				clock.Set(testBase.Add(6 * day))
				ids := fillDays(t, s, 6, 100)
				if archived {
					clock.Set(testBase.Add(7 * day))
					require.NoError(t, s.Compact(ctx))
				}
				require.NoError(t, s.DropBefore(ctx, testBase.Add(tc.cut)))
				n, err := s.Query().Count(ctx)
				require.NoError(t, err)
				require.Equal(t, tc.wantLeft, n)
				dropped := 600 - tc.wantLeft
				for i, id := range ids {
					_, err := s.Get(ctx, id)
					if i < dropped {
						require.ErrorIs(t, err, ErrNotFound)
					} else {
						require.NoError(t, err)
					}
				}
				require.NoError(t, s.Verify(ctx))
				// It lasts: reopen and count again; no archive files linger.
				require.NoError(t, s.Close())
				s2, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour})
				require.NoError(t, err)
				defer s2.Close()
				n, err = s2.Query().Count(ctx)
				require.NoError(t, err)
				require.Equal(t, tc.wantLeft, n)
				st, err := s2.Stats(ctx)
				require.NoError(t, err)
				entries, err := os.ReadDir(filepath.Join(dir, "archive"))
				require.NoError(t, err)
				require.Len(t, entries, st.Archives)
				require.NoError(t, s2.Verify(ctx))
			})
		}
	}
}

func TestCursorSurvivesCompaction(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{ColdAfter: time.Hour})
	clock.Set(testBase.Add(5 * 24 * time.Hour))
	fillDays(t, s, 4, 100)
	want, err := s.Query().Types("t0", "t2").Limit(MaxLimit).All(ctx)
	require.NoError(t, err)

	q := s.Query().Types("t0", "t2").Limit(70)
	first, err := q.All(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, st.Archives)
	got := first.Activities
	for cur := first.Next; cur != ""; {
		page, err := q.After(cur).All(ctx)
		require.NoError(t, err)
		got = append(got, page.Activities...)
		cur = page.Next
	}
	equalActs(t, want.Activities, got)
}

// TestLateArrivalsIntoArchivedWindow appends into archived windows, of the
// current format and of format 2: queries merge them, and the next Compact
// writes the window's archive again.
func TestLateArrivalsIntoArchivedWindow(t *testing.T) {
	for _, format2 := range []bool{false, true} {
		t.Run(fmt.Sprint("format2=", format2), func(t *testing.T) { testLateArrivalsIntoArchivedWindow(t, format2) })
	}
}

func testLateArrivalsIntoArchivedWindow(t *testing.T, format2 bool) {
	ctx := context.Background()
	day := 24 * time.Hour
	s, dir, clock := openTest(t, &Options{ColdAfter: time.Hour, format2: format2})
	clock.Set(testBase.Add(4 * day))
	fillDays(t, s, 3, 100)
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.Archives)
	before, err := os.ReadDir(filepath.Join(dir, "archive"))
	require.NoError(t, err)

	// Late arrivals land between archived activities of day 1.
	var late []Activity
	for i := range 40 {
		a := act("late", "u1", testBase.Add(day+time.Duration(i)*7*time.Minute+30*time.Second))
		late = append(late, a)
	}
	lateIDs := mustAppend(t, s, late...)
	want, err := s.Query().Limit(MaxLimit).All(ctx) // merged order
	require.NoError(t, err)
	for i := 1; i < len(want.Activities); i++ {
		require.Positive(t, want.Activities[i-1].ID.Compare(want.Activities[i].ID))
	}
	for _, id := range lateIDs {
		got, err := s.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "late", got.Type)
	}
	n, err := s.Query().Users("u1").Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 3*17+40, n) // u1 has 17 of each day's 100
	// Skips that land inside the merged window.
	for _, skip := range []int{0, 150, 170, 199, 230, 339} {
		page, err := s.Query().Skip(skip).Limit(5).All(ctx)
		require.NoError(t, err)
		equalActs(t, want.Activities[skip:min(skip+5, len(want.Activities))], page.Activities, "skip %d", skip)
	}
	snap := snapshotQueries(t, s)

	// The next Compact merges them into a new archive of that window.
	require.NoError(t, s.Compact(ctx))
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.Archives)
	require.Equal(t, 0, st.Segments)
	require.Equal(t, 340, st.Activities)
	after, err := os.ReadDir(filepath.Join(dir, "archive"))
	require.NoError(t, err)
	require.Len(t, after, 3)
	require.NotEqual(t, before, after, "the window's archive was replaced")
	require.Equal(t, snap, snapshotQueries(t, s))
	require.NoError(t, s.Verify(ctx))
}

func TestBackgroundCompactor(t *testing.T) {
	committed := make(chan struct{}, 100)
	hook := func(step string) {
		if step == "committed" {
			committed <- struct{}{}
		}
	}
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{ColdAfter: time.Hour, CompactEvery: time.Millisecond, hook: hook})
	clock.Set(testBase.Add(4 * 24 * time.Hour))
	ids := fillDays(t, s, 3, 50)
	for range 3 {
		<-committed
	}
	require.NoError(t, s.Close()) // stops the compactor
	s2, err := Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour})
	require.NoError(t, err)
	defer s2.Close()
	st, err := s2.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.Archives)
	for _, id := range ids {
		_, err := s2.Get(ctx, id)
		require.NoError(t, err)
	}
	require.NoError(t, s2.Verify(ctx))
}

func TestCompactIterAcrossTiers(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{ColdAfter: 36 * time.Hour})
	clock.Set(testBase.Add(4 * 24 * time.Hour))
	ids := fillDays(t, s, 4, 300)
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, st.Archives)
	var got []ID
	for a, err := range s.Query().Iter(ctx) {
		require.NoError(t, err)
		got = append(got, a.ID)
	}
	slices.Reverse(got)
	require.Equal(t, ids, got)
}

// TestCompactCompressibleWindow archives a window whose activities differ
// only in their time, which compresses far beyond 64x, and reads it back:
// the reader must accept every archive the writer makes.
func TestCompactCompressibleWindow(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{ColdAfter: time.Nanosecond})
	at := testBase.Add(time.Hour)
	clock.Set(at.Add(48 * time.Hour))
	var ids []ID
	batch := make([]Activity, 10)
	for i := range 300 {
		for j := range batch {
			batch[j] = Activity{Type: "bench.reopen", Module: "bench", Action: "append",
				Time:    at.Add(time.Duration(i*len(batch)+j) * time.Millisecond),
				Details: json.RawMessage(`{"ip":"10.0.0.1"}`)}
		}
		ids = append(ids, mustAppend(t, s, batch...)...)
	}
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 3000, st.ArchivedActivities)
	page, err := s.Query().Limit(50).All(ctx)
	require.NoError(t, err)
	require.Len(t, page.Activities, 50)
	assert.Equal(t, ids[len(ids)-1], page.Activities[0].ID)
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())
	s = reopenTest(t, dir, &Options{Now: clock.Now})
	n, err := s.Query().Types("bench.reopen").Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3000, n)
	require.NoError(t, s.Verify(ctx))
}
