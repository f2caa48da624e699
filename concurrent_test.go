package activitystore

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentAppendsAndQueries runs writers, cursor walkers, counters,
// the sealer and compactions at once; writers keep adding to windows that are
// being archived. Run it with -race.
func TestConcurrentAppendsAndQueries(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: 5 * time.Minute, SealAfter: time.Minute, ColdAfter: time.Minute, NoSync: true, CacheBytes: 256 << 10, lateMin: 64})
	const writers, batches, per = 4, 40, 50
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for b := range batches {
				batch := make([]Activity, per)
				for i := range batch {
					at := testBase.Add(time.Duration(b*per+i)*time.Second - time.Duration(r.IntN(600))*time.Second)
					batch[i] = act(pick(r, mTypes), pick(r, mUsers), at)
				}
				if _, err := s.Append(ctx, batch...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// background runs step (given its round number) until stop, reporting
	// the first error.
	var readers sync.WaitGroup
	background := func(step func(round int) error) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := step(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	walk := func(int) error {
		// A cursor walk: IDs strictly descending, never repeated.
		q := s.Query().Types("user.login", "model.deploy").Limit(37)
		var last ID
		for {
			page, err := q.All(ctx)
			if err != nil {
				return err
			}
			for _, a := range page.Activities {
				if !last.IsZero() && a.ID.Compare(last) >= 0 {
					return fmt.Errorf("cursor walk went back: %s after %s", a.ID, last)
				}
				last = a.ID
			}
			if page.Next == "" {
				break
			}
			q.After(page.Next)
		}
		_, err := s.Query().Users("u1").Since(testBase).Count(ctx)
		return err
	}
	background(walk)
	background(walk)
	compactions := 0
	background(func(int) error { // archives while the others run
		compactions++
		return s.Compact(ctx)
	})
	background(func(i int) error { // seals while the others run
		clock.Set(testBase.Add(time.Duration(i) * time.Second))
		return s.sealDue(ctx)
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	n, err := s.Query().Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, writers*batches*per, n)
	seen := map[ID]bool{}
	var prev ID
	for a, err := range s.Query().Iter(ctx) {
		require.NoError(t, err)
		require.False(t, seen[a.ID])
		seen[a.ID] = true
		if !prev.IsZero() {
			require.Equal(t, -1, a.ID.Compare(prev))
		}
		prev = a.ID
	}
	assert.Len(t, seen, n)
	require.NoError(t, s.Verify(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	t.Logf("%d compactions ran alongside; %d archives, %d hot segments", compactions, st.Archives, st.Segments)

	// Archive everything: the same activities, in the same order.
	clock.Set(testBase.Add(24 * time.Hour))
	require.NoError(t, s.Compact(ctx))
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Segments)
	var again []ID
	for a, err := range s.Query().Iter(ctx) {
		require.NoError(t, err)
		require.True(t, seen[a.ID])
		again = append(again, a.ID)
	}
	require.Len(t, again, n)
	require.NoError(t, s.Verify(ctx))
}

const (
	crashEnv     = "ACTIVITYSTORE_CRASH_CHILD_DIR"
	crashModeEnv = "ACTIVITYSTORE_CRASH_CHILD_MODE" // "seal" or "checkpoint"
)

// TestCrashChild is the child of TestCrash: it appends with Sync until
// killed, printing each acknowledged ID.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	// seal: every window is sealed as soon as it ends, and appends into
	// sealed windows open them again. checkpoint: the windows of the last
	// hour stay open and are written every 40 appends.
	opts := &Options{SegmentWidth: 10 * time.Minute, SealAfter: time.Millisecond, SealEvery: 5 * time.Millisecond}
	if os.Getenv(crashModeEnv) == "checkpoint" {
		opts.SealAfter, opts.checkpoint = time.Hour, 40
	}
	s, err := Open(dir, opts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for b := 0; ; b++ {
		batch := make([]Activity, 1+r.IntN(30))
		for i := range batch {
			at := time.Now().Add(-time.Duration(r.Int64N(int64(2 * time.Hour))))
			batch[i] = act(pick(r, mTypes), pick(r, mUsers), at)
		}
		ids, err := s.Append(context.Background(), batch...)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		for _, id := range ids {
			fmt.Fprintln(out, "ack", id)
		}
		out.Flush()
	}
}

// crashRounds makes TestCrash a soak: go test -run '^TestCrash$' -crash.rounds 200.
var crashRounds = flag.Int("crash.rounds", 0, "kills of TestCrash (default 5, 2 with -short)")

// TestCrash kills a child process that appends with Sync at random moments
// and checks after each kill that every acknowledged activity is there
// exactly once and that Verify is clean.
func TestCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(11, 5))
	acked := map[ID]bool{}
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	if *crashRounds > 0 {
		rounds = *crashRounds
	}
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		mode := []string{"seal", "checkpoint"}[round%2]
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashModeEnv+"="+mode)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first acknowledgement, then a random while more.
		first := <-lines
		require.True(t, strings.HasPrefix(first, "ack "), "child said %q", first)
		deadline := time.After(time.Duration(50+r.IntN(400)) * time.Millisecond)
		got := []string{first}
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				got = append(got, l)
			case <-deadline:
				break wait
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for l := range lines { // what the child wrote before dying
			got = append(got, l)
		}
		_ = cmd.Wait()
		for _, l := range got {
			if !strings.HasPrefix(l, "ack ") {
				require.Failf(t, "child failed", "%s", l)
			}
			id, err := ParseID(strings.TrimPrefix(l, "ack "))
			if err != nil { // a line cut by the kill
				continue
			}
			acked[id] = true
		}

		// What the kill left unsealed: the dirty windows and their records.
		dirtyWindows, dirtyRecords := crashLeftDirty(t, dir, 10*time.Minute)

		// A tiny cache, so that sealed segments are evicted and read again.
		s, err := Open(dir, &Options{SegmentWidth: 10 * time.Minute, SealEvery: time.Hour, CacheBytes: 16 << 10})
		require.NoError(t, err, "round %d", round)
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, dirtyWindows, st.RebuiltSegments, "round %d: Open rebuilds the dirty windows only", round)
		require.LessOrEqual(t, st.RebuiltActivities, dirtyRecords, "round %d", round)
		require.NoError(t, s.Verify(ctx), "round %d", round)
		seen := map[ID]int{}
		for a, err := range s.Query().Iter(ctx) {
			require.NoError(t, err)
			seen[a.ID]++
		}
		for id := range acked {
			require.Equal(t, 1, seen[id], "round %d: acknowledged %s", round, id)
			_, err := s.Get(ctx, id)
			require.NoError(t, err)
		}
		for id, n := range seen {
			require.Equal(t, 1, n, "round %d: %s returned %d times", round, id, n)
		}
		n, err := s.Query().Count(ctx)
		require.NoError(t, err)
		require.Equal(t, len(seen), n)
		t.Logf("round %d (%s): %d acknowledged, %d stored, %d windows rebuilt (%d activities in them, %d read)", round, mode, len(acked), n, dirtyWindows, dirtyRecords, st.RebuiltActivities)
		require.NoError(t, s.Close())
		// A clean Close leaves nothing to rebuild.
		s, err = Open(dir, &Options{SegmentWidth: 10 * time.Minute, SealEvery: time.Hour})
		require.NoError(t, err)
		st, err = s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, 0, st.RebuiltActivities, "round %d", round)
		require.Equal(t, 0, st.OpenSegments, "round %d", round)
		require.Equal(t, n, st.Activities, "round %d", round)
		require.NoError(t, s.Close())
	}
}

// crashLeftDirty opens the pebble database of a store that crashed and
// returns its windows marked dirty and the records in them.
func crashLeftDirty(t *testing.T, dir string, width time.Duration) (windows, records int) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	require.NoError(t, err)
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDirty}, UpperBound: []byte{prefixDirty + 1}})
	require.NoError(t, err)
	var ws []int64
	for it.First(); it.Valid(); it.Next() {
		w, ok := keyWindow(it.Key())
		require.True(t, ok)
		ws = append(ws, w)
	}
	require.NoError(t, it.Close())
	for _, w := range ws {
		lo, hi := idFloor(w*int64(width)), idFloor((w+1)*int64(width))
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: recordKey(nil, hi), UpperBound: recordKey(nil, lo)})
		require.NoError(t, err)
		for it.First(); it.Valid(); it.Next() {
			records++
		}
		require.NoError(t, it.Close())
	}
	return len(ws), records
}
