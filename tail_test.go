package activitystore

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mustTail starts a tail, failing the test on an error.
func mustTail(t *testing.T, s *Store, q *Query, from string) iter.Seq2[TailEvent, error] {
	t.Helper()
	seq, err := s.Tail(context.Background(), q, from)
	require.NoError(t, err)
	return seq
}

// next pulls one item from a tail, failing the test if the tail ends.
func next(t *testing.T, pull func() (TailEvent, error, bool)) (TailEvent, error) {
	t.Helper()
	ev, err, ok := pull()
	require.True(t, ok, "the tail ended")
	return ev, err
}

func TestTailFiltersAndOrder(t *testing.T) {
	s, _, _ := openTest(t, nil)
	mustAppend(t, s, act("user.login", "u1", testBase)) // before the tail: not seen
	seq := mustTail(t, s, s.Query().Types("user.login", "model.deploy").Users("u1"), "")
	var want []ID
	for i := range 30 {
		typ := []string{"user.login", "model.deploy", "lab.create"}[i%3]
		user := []string{"u1", "u2"}[i%2]
		// Times out of order: the tail follows arrival, not event time.
		at := testBase.Add(time.Duration((i*7)%11) * time.Minute)
		ids := mustAppend(t, s, act(typ, user, at))
		if typ != "lab.create" && user == "u1" {
			want = append(want, ids[0])
		}
	}
	var got []ID
	for ev, err := range seq {
		require.NoError(t, err)
		require.NotEmpty(t, ev.Cursor)
		require.Equal(t, "u1", ev.Activity.UserID)
		got = append(got, ev.Activity.ID)
		if len(got) == len(want) {
			break
		}
	}
	require.Equal(t, want, got)
}

func TestTailLimitTimeRangeAndResume(t *testing.T) {
	s, _, _ := openTest(t, nil)
	q := s.Query().Since(testBase.Add(time.Hour)).Until(testBase.Add(2 * time.Hour)).Limit(3)
	seq := mustTail(t, s, q, "")
	var ids []ID
	for i := range 12 {
		ids = append(ids, mustAppend(t, s, act("t", "u", testBase.Add(time.Duration(i)*15*time.Minute)))...)
	}
	// Times 0:00, 0:15, ... 2:45: the range keeps 1:00 to 1:45, ids[4:8].
	var got []TailEvent
	for ev, err := range seq {
		require.NoError(t, err)
		got = append(got, ev)
	}
	require.Len(t, got, 3, "Limit ends the tail")
	require.Equal(t, []ID{ids[4], ids[5], ids[6]}, []ID{got[0].Activity.ID, got[1].Activity.ID, got[2].Activity.ID})

	// Resuming after the second event gives the third and fourth.
	var again []ID
	for ev, err := range mustTail(t, s, q.Limit(2), got[1].Cursor) {
		require.NoError(t, err)
		again = append(again, ev.Activity.ID)
	}
	require.Equal(t, []ID{ids[6], ids[7]}, again)
}

func TestTailSlowConsumerLags(t *testing.T) {
	s, _, _ := openTest(t, &Options{TailBacklog: 8})
	seq := mustTail(t, s, nil, "")
	var ids []ID
	for i := range 20 {
		ids = append(ids, mustAppend(t, s, act("t", "u", testBase.Add(time.Duration(i)*time.Second)))...)
	}
	pull, stop := iter.Pull2(seq)
	defer stop()
	_, err := next(t, pull)
	var lag *LagError
	require.ErrorAs(t, err, &lag)
	require.ErrorIs(t, err, ErrLagged)
	require.Equal(t, int64(12), lag.Missed)
	// The tail goes on with the 8 still kept, then with new appends.
	for _, id := range ids[12:] {
		ev, err := next(t, pull)
		require.NoError(t, err)
		require.Equal(t, id, ev.Activity.ID)
	}
	more := mustAppend(t, s, act("t", "u", testBase))
	ev, err := next(t, pull)
	require.NoError(t, err)
	require.Equal(t, more[0], ev.Activity.ID)

	// Resuming from the lag's cursor: the backlog has moved one on since,
	// so the tail says it missed one, then gives the oldest kept.
	pull2, stop2 := iter.Pull2(mustTail(t, s, nil, lag.Resume))
	defer stop2()
	_, err = next(t, pull2)
	require.ErrorAs(t, err, &lag)
	require.Equal(t, int64(1), lag.Missed)
	ev, err = next(t, pull2)
	require.NoError(t, err)
	require.Equal(t, ids[13], ev.Activity.ID)
}

func TestTailNeverBlocksAppends(t *testing.T) {
	s, _, _ := openTest(t, &Options{TailBacklog: 16})
	seq := mustTail(t, s, nil, "")
	mustAppend(t, s, act("t", "u", testBase))
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan []error)
	go func() {
		var errs []error
		n := 0
		for _, err := range seq {
			if n == 0 {
				close(held)
				<-release // the consumer stalls inside its loop
			}
			n++
			if err != nil {
				errs = append(errs, err)
				break
			}
		}
		done <- errs
	}()
	<-held
	for i := range 100 {
		mustAppend(t, s, act("t", "u", testBase.Add(time.Duration(i)*time.Second)))
	}
	close(release)
	errs := <-done
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], ErrLagged)
}

func TestTailEnds(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		s, _, _ := openTest(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		seq, err := s.Tail(ctx, nil, "")
		require.NoError(t, err)
		done := make(chan int)
		go func() {
			n := 0
			for range seq {
				n++
			}
			done <- n
		}()
		cancel()
		require.Equal(t, 0, <-done, "a cancelled tail ends with no item")
	})
	t.Run("close", func(t *testing.T) {
		s, _, _ := openTest(t, nil)
		seq := mustTail(t, s, nil, "")
		done := make(chan error)
		go func() {
			var last error
			for _, err := range seq {
				last = err
			}
			done <- last
		}()
		require.NoError(t, s.Close())
		require.ErrorIs(t, <-done, ErrClosed)
		_, err := s.Tail(context.Background(), nil, "")
		require.ErrorIs(t, err, ErrClosed)
	})
}

func TestTailBadInput(t *testing.T) {
	ctx := context.Background()
	s, dir, _ := openTest(t, nil)
	first := func(seq func(func(TailEvent, error) bool)) error {
		for _, err := range seq {
			return err
		}
		return nil
	}
	var qe *QueryError
	for _, tc := range []struct {
		q     *Query
		from  string
		field string
	}{
		{s.Query().Skip(2), "", "skip"},
		{s.Query().After("x"), "", "cursor"},
		{nil, "not-a-cursor", "from"},
		{s.Query().Limit(-1), "", "limit"},
		{s.Query().Since(testBase).Until(testBase.Add(-1)), "", "until"},
	} {
		seq, err := s.Tail(ctx, tc.q, tc.from)
		require.Nil(t, seq)
		require.ErrorAs(t, err, &qe)
		require.Equal(t, tc.field, qe.Field)
	}

	// A cursor of an earlier Open: told that what came between is unknown.
	seq := mustTail(t, s, nil, "")
	mustAppend(t, s, act("t", "u", testBase))
	var cursor string
	for ev, err := range seq {
		require.NoError(t, err)
		cursor = ev.Cursor
		break
	}
	require.NoError(t, s.Close())
	s2, err := Open(dir, nil)
	require.NoError(t, err)
	defer s2.Close()
	var lag *LagError
	seq, err = s2.Tail(ctx, nil, cursor)
	require.NoError(t, err)
	require.ErrorAs(t, first(seq), &lag)
	require.Equal(t, int64(-1), lag.Missed)
}

// TestTailConcurrent: writers append while tails follow; each tail sees every
// activity exactly once.
func TestTailConcurrent(t *testing.T) {
	const writers, batches, per = 4, 25, 20
	s, _, _ := openTest(t, &Options{NoSync: true})
	ctx := context.Background()
	var tails [3]func(func(TailEvent, error) bool)
	for i := range tails {
		tails[i] = mustTail(t, s, nil, "")
	}
	results := make([]map[ID]int, len(tails))
	var wg sync.WaitGroup
	for i, seq := range tails {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[ID]int{}
			for ev, err := range seq {
				if err != nil {
					t.Error(err)
					return
				}
				seen[ev.Activity.ID]++
				if len(seen) == writers*batches*per {
					break
				}
			}
			results[i] = seen
		}()
	}
	appended := make(chan ID, writers*batches*per)
	var ww sync.WaitGroup
	for w := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for b := range batches {
				batch := make([]Activity, per)
				for i := range batch {
					batch[i] = act("t", fmt.Sprintf("u%d", w), testBase.Add(time.Duration(b*per+i)*time.Millisecond))
				}
				ids, err := s.Append(ctx, batch...)
				if err != nil {
					t.Error(err)
					return
				}
				for _, id := range ids {
					appended <- id
				}
			}
		}()
	}
	ww.Wait()
	close(appended)
	wg.Wait()
	var all []ID
	for id := range appended {
		all = append(all, id)
	}
	require.Len(t, all, writers*batches*per)
	for _, seen := range results {
		require.Len(t, seen, writers*batches*per)
		for _, id := range all {
			require.Equal(t, 1, seen[id])
		}
		for _, n := range seen {
			require.Equal(t, 1, n)
		}
	}
}

// TestTailAcrossCompaction: activities deleted before the tail reads them are
// passed over, and archived ones are still read.
func TestTailAcrossCompaction(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour, ColdAfter: time.Hour})
	seq := mustTail(t, s, nil, "")
	old := mustAppend(t, s, act("t", "u", testBase))
	mid := mustAppend(t, s, act("t", "u", testBase.Add(5*time.Hour)))
	clock.Set(testBase.Add(7 * time.Hour))
	require.NoError(t, s.DropBefore(ctx, testBase.Add(time.Hour)))
	require.NoError(t, s.Compact(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Archives)
	newer := mustAppend(t, s, act("t", "u", testBase.Add(6*time.Hour)))
	var got []ID
	for ev, err := range seq {
		require.NoError(t, err)
		got = append(got, ev.Activity.ID)
		if len(got) == 2 {
			break
		}
	}
	require.NotContains(t, got, old[0])
	require.Equal(t, []ID{mid[0], newer[0]}, got)
}

// TestTailHoldsLittle checks that a tail whose consumer stops holds about
// tailBytes of activities, not a whole backlog chunk of them, however large
// they are; and that it still delivers every match in order.
func TestTailHoldsLittle(t *testing.T) {
	s, _, _ := openTest(t, nil)
	const tails, n = 20, 200
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	var pulls []func() (TailEvent, error, bool)
	for range tails {
		pull, stop := iter.Pull2(mustTail(t, s, nil, ""))
		pulls, stops = append(pulls, pull), append(stops, stop)
	}
	big := act("t", "u", testBase)
	big.Details = []byte(`{"pad":"` + strings.Repeat("p", 60<<10) + `"}`)
	batch := make([]Activity, n)
	for i := range batch {
		batch[i] = big
	}
	ids := mustAppend(t, s, batch...)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, pull := range pulls { // each reads its first batch and stops
		ev, err := next(t, pull)
		require.NoError(t, err)
		require.Equal(t, ids[0], ev.Activity.ID)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// A batch of 256 such activities would be 15 MB per tail.
	require.Less(t, held, int64(tails*4*tailBytes), "%d bytes held by %d stopped tails", held, tails)
	for _, id := range ids[1:] {
		ev, err := next(t, pulls[0])
		require.NoError(t, err)
		require.Equal(t, id, ev.Activity.ID)
	}
}
