package activitystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Environment of the child process of TestCompactCrash: the store directory,
// and the step to die at as "step/nth" (the nth time that step is reached).
const (
	compactCrashEnv   = "ACTIVITYSTORE_COMPACT_CRASH"
	compactCrashAtEnv = "ACTIVITYSTORE_COMPACT_CRASH_AT"
)

// compactSteps are the steps archiveWindow reports to compactHook, in order.
var compactSteps = []string{"written", "renamed", "dir-synced", "committed", "removed"}

// arcNow is the fixed clock of the archive tests: windows (days) 0 to 4
// after testBase are cold, days 5 and 6 are hot.
var arcNow = testBase.Add(6*24*time.Hour + 12*time.Hour)

func arcOpts() *Options {
	// A small cache, so that sealed and archived data are evicted and read
	// again.
	return &Options{Now: func() time.Time { return arcNow }, SealEvery: time.Hour, ColdAfter: 24 * time.Hour, CacheBytes: 32 << 10}
}

// day returns the start of day d after testBase: the start of its window.
func day(d int) time.Time { return testBase.Add(time.Duration(d) * 24 * time.Hour) }

// windowOf returns the window of day d with the default 24h width.
func windowOf(d int) int64 { return day(d).UnixNano() / int64(24*time.Hour) }

// variedActs returns per activities on each of days, spread over the day,
// with varied labels and details of every shape an archive block stores
// differently: split objects, nested values, whitespace, none, {}.
func variedActs(days []int, per, salt int) []Activity {
	details := []string{
		`{"n":%d,"ok":true}`,
		`{"nested":{"a":[1,2,{"b":"x,y}"}]},"s":"q\"uote","n":%d}`,
		`{ "spaced" : %d }`,
		``,
		`{}`,
		`{"n":%d,"list":["a","b"],"obj":{}}`,
	}
	var out []Activity
	for _, d := range days {
		for i := range per {
			k := i + salt
			at := day(d).Add(time.Duration(i)*(24*time.Hour/time.Duration(per)) + time.Duration(salt)*time.Second + time.Duration(k%1000)*time.Microsecond)
			a := Activity{
				Time:     at,
				Type:     mTypes[k%len(mTypes)],
				UserID:   mUsers[k%len(mUsers)],
				Module:   mModules[k%len(mModules)],
				Action:   mActions[k%len(mActions)],
				Resource: mResources[k%len(mResources)],
				APICall:  fmt.Sprintf("POST /api/x/%d", k%7),
			}
			if f := details[k%len(details)]; f != "" {
				if strings.Contains(f, "%d") {
					f = fmt.Sprintf(f, k)
				}
				a.Details = []byte(f)
			}
			out = append(out, a)
		}
	}
	return out
}

// appendAll appends acts and records them by ID in want.
func appendAll(t testing.TB, s *Store, want map[ID]Activity, acts []Activity) {
	t.Helper()
	ids := mustAppend(t, s, acts...)
	for i, id := range ids {
		a := acts[i]
		a.ID = id
		want[id] = a
	}
}

// requireSame checks that got is the activity want with its stored form.
func requireSame(t testing.TB, want, got Activity) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Time.UnixNano(), got.Time.UnixNano(), "time of %s", want.ID)
	require.Equal(t, []string{want.Type, want.UserID, want.Module, want.Action, want.APICall, want.Resource, string(bytes.TrimSpace(want.Details))},
		[]string{got.Type, got.UserID, got.Module, got.Action, got.APICall, got.Resource, string(got.Details)}, "activity %s", want.ID)
}

// idsDesc returns the IDs of want newest first.
func idsDesc(want map[ID]Activity) []ID {
	ids := make([]ID, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b ID) int { return b.Compare(a) })
	return ids
}

// walkIDs returns the IDs q.Iter yields, or the error that ended it.
func walkIDs(ctx context.Context, q *Query) ([]ID, error) {
	var out []ID
	for a, err := range q.Iter(ctx) {
		if err != nil {
			return out, err
		}
		out = append(out, a.ID)
	}
	return out, nil
}

// copyDir copies the regular files under src to dst.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	require.NoError(t, err)
}

// listDir returns the names in dir, sorted.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// archiveNames returns the file names of s's archives, by window.
func archiveNames(s *Store) map[int64]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[int64]string{}
	for w, a := range s.archives {
		out[w] = a.name
	}
	return out
}

// checkStoreHolds checks that s holds exactly the activities of want: a
// full walk returns each once, newest first, as appended; cursor pages
// agree; Get finds each; Count matches; Verify is clean; the archive folder
// holds exactly the archives s refers to.
func checkStoreHolds(t *testing.T, s *Store, want map[ID]Activity) {
	t.Helper()
	ctx := context.Background()
	wantIDs := idsDesc(want)

	var walked []ID
	for a, err := range s.Query().Limit(0).Iter(ctx) {
		require.NoError(t, err)
		w, ok := want[a.ID]
		require.True(t, ok, "walk returned unknown activity %s", a.ID)
		requireSame(t, w, a)
		walked = append(walked, a.ID)
	}
	require.Equal(t, wantIDs, walked, "full walk")

	var paged []ID
	q := s.Query().Limit(37)
	for {
		page, err := q.All(ctx)
		require.NoError(t, err)
		for _, a := range page.Activities {
			paged = append(paged, a.ID)
		}
		if page.Next == "" {
			break
		}
		q.After(page.Next)
	}
	require.Equal(t, wantIDs, paged, "cursor pages")

	for _, id := range wantIDs {
		got, err := s.Get(ctx, id)
		require.NoError(t, err, "Get %s", id)
		requireSame(t, want[id], got)
	}
	n, err := s.Query().Count(ctx)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, len(want), st.Activities)
	require.NoError(t, s.Verify(ctx))

	var names []string
	for _, name := range archiveNames(s) {
		names = append(names, name)
	}
	slices.Sort(names)
	require.Equal(t, names, listDir(t, s.archDir), "archive folder holds exactly the store's archives")
}

// TestCompactCrashChild is the child of TestCompactCrash: it opens the
// store, kills itself with SIGKILL at the given step of Compact and reports
// if it was never reached.
func TestCompactCrashChild(t *testing.T) {
	dir := os.Getenv(compactCrashEnv)
	if dir == "" {
		t.Skip("run by TestCompactCrash")
	}
	step, nthText, _ := strings.Cut(os.Getenv(compactCrashAtEnv), "/")
	nth, err := strconv.Atoi(nthText)
	if err != nil || !slices.Contains(compactSteps, step) {
		fmt.Printf("bad %s %q\n", compactCrashAtEnv, os.Getenv(compactCrashAtEnv))
		os.Exit(2)
	}
	seen := 0
	o := arcOpts()
	o.hook = func(at string) {
		if at != step {
			return
		}
		if seen++; seen == nth {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	s, err := Open(dir, o)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	err = s.Compact(context.Background())
	fmt.Printf("step %s/%d not reached (reached %d times); Compact returned %v\n", step, nth, seen, err)
	os.Exit(3)
}

// compactCrashScenario is a store state to compact in a child process.
type compactCrashScenario struct {
	name string
	// nth is the occurrence of the step to die at: with 2, the first
	// window is archived whole before the crash.
	nth int
	// archives is how many archives there are before the child runs.
	archives int
	// merge: the window compacted at the crash already has an archive, so
	// the crash may leave the replaced file behind.
	merge bool
	setup func(t *testing.T, dir string) map[ID]Activity
}

// TestCompactCrash kills a process at each step of Compact and checks that
// the reopened store holds every activity exactly once, that Verify is
// clean and that Open removed every leftover file; then that a second
// Compact finishes the work.
func TestCompactCrash(t *testing.T) {
	if os.Getenv(compactCrashEnv) != "" {
		t.Skip("child")
	}
	ctx := context.Background()
	fresh := func(t *testing.T, dir string) map[ID]Activity {
		s, err := Open(dir, arcOpts())
		require.NoError(t, err)
		defer s.Close()
		want := map[ID]Activity{}
		appendAll(t, s, want, variedActs([]int{0, 1, 2, 3, 4, 5, 6}, 30, 0))
		return want
	}
	scenarios := []compactCrashScenario{
		// Days 0-4 are cold, none archived yet: the crash hits the first
		// window archived (day 4), or the second (day 3).
		{name: "fresh-first", nth: 1, archives: 0, setup: fresh},
		{name: "fresh-second", nth: 2, archives: 0, setup: fresh},
		{
			// Days 0-4 are archived, then late arrivals come for days 4, 3
			// and 1 and for a day never seen (-1): the crash hits the
			// merge of day 4 with its archive.
			name: "merge", nth: 1, archives: 5, merge: true,
			setup: func(t *testing.T, dir string) map[ID]Activity {
				s, err := Open(dir, arcOpts())
				require.NoError(t, err)
				defer s.Close()
				want := map[ID]Activity{}
				appendAll(t, s, want, variedActs([]int{0, 1, 2, 3, 4, 5, 6}, 30, 0))
				require.NoError(t, s.Compact(ctx))
				st, err := s.Stats(ctx)
				require.NoError(t, err)
				require.Equal(t, 5, st.Archives)
				appendAll(t, s, want, variedActs([]int{4, 3, 1, -1, 6}, 9, 17))
				return want
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			template := t.TempDir()
			want := sc.setup(t, template)
			for _, step := range compactSteps {
				t.Run(step, func(t *testing.T) {
					dir := t.TempDir()
					copyDir(t, template, dir)
					cmd := exec.Command(os.Args[0], "-test.run=^TestCompactCrashChild$", "-test.count=1")
					cmd.Env = append(os.Environ(), compactCrashEnv+"="+dir, fmt.Sprintf("%s=%s/%d", compactCrashAtEnv, step, sc.nth))
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					require.True(t, errors.As(err, &ee), "child did not fail: %v\n%s", err, out)
					ws, ok := ee.Sys().(syscall.WaitStatus)
					require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child was not killed at %s: %v\n%s", step, err, out)

					// What the crash left in the archive folder.
					left := listDir(t, filepath.Join(dir, "archive"))
					s, err := Open(dir, arcOpts())
					require.NoError(t, err)
					defer s.Close()
					refs := map[string]bool{}
					for _, name := range archiveNames(s) {
						refs[name] = true
					}
					var tmps, stray []string
					for _, name := range left {
						switch {
						case strings.HasSuffix(name, ".tmp"):
							tmps = append(tmps, name)
						case !refs[name]:
							stray = append(stray, name)
						}
					}
					t.Logf("left by the crash: %v; referenced: %d archives", left, len(refs))
					switch step {
					case "written":
						require.Len(t, tmps, 1, "a temporary file")
						require.Empty(t, stray)
					case "renamed", "dir-synced":
						require.Empty(t, tmps)
						require.Len(t, stray, 1, "the new archive, not yet recorded")
					case "committed":
						require.Empty(t, tmps)
						if sc.merge {
							require.Len(t, stray, 1, "the replaced archive")
						} else {
							require.Empty(t, stray)
						}
					case "removed":
						require.Empty(t, tmps)
						require.Empty(t, stray)
					}
					archived := sc.archives + sc.nth - 1
					if !sc.merge && (step == "committed" || step == "removed") {
						archived++
					}
					require.Len(t, refs, archived, "archives after the crash")

					checkStoreHolds(t, s, want)

					// A second Compact finishes the work.
					require.NoError(t, s.Compact(ctx))
					checkStoreHolds(t, s, want)
					st, err := s.Stats(ctx)
					require.NoError(t, err)
					cold := 5
					if sc.merge {
						cold = 6 // day -1 too
					}
					require.Equal(t, cold, st.Archives)
					require.Equal(t, 2, st.Segments, "days 5 and 6 stay hot")

					// And the result survives a reopen.
					require.NoError(t, s.Close())
					s2, err := Open(dir, arcOpts())
					require.NoError(t, err)
					defer s2.Close()
					checkStoreHolds(t, s2, want)
				})
			}
		})
	}
}
