package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/activitystore/activitystore"
)

// The reopen phase opens the populated store in a fresh process, as a
// restarted server, a command line call or an embedding service would, and
// measures the time to the first answers and the process's peak memory. The
// child is this program again, run with -reopen-child.

// reopenResult is one fresh process on the bench's store.
type reopenResult struct {
	Case         string  `json:"case"`
	OpenMS       float64 `json:"open_ms"`         // Open
	FirstMS      float64 `json:"first_answer_ms"` // Open + Q1
	Q3lMS        float64 `json:"q3l_ms"`          // Q3l after Q1
	WallMS       float64 `json:"wall_ms"`         // the whole process, from exec to exit
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	RebuiltActs  int     `json:"rebuilt_activities"`
	OpenSegments int     `json:"open_segments"`
	Err          string  `json:"error,omitempty"`
}

var (
	reopenChild = flag.String("reopen-child", "", "internal: open this store, answer Q1 and Q3l, print the timings as JSON")
	appendChild = flag.String("append-child", "", "internal: append to this store until killed")
	childNow    = flag.Int64("child-now", 0, "internal: the store clock of a child, Unix ns")
	childUser   = flag.String("child-user", "", "internal: the Q3l user of a child")
	measureCmd  = flag.Bool("measure-cmd", false, "internal: run the command in the arguments, print its wall time and peak RSS as JSON")
)

// runChild runs the child modes; it reports whether one ran.
func runChild() bool {
	now := time.Unix(0, *childNow)
	clock := func() time.Time { return now }
	switch {
	case *reopenChild != "":
		r := reopenResult{}
		err := func() error {
			ctx := context.Background()
			t0 := time.Now()
			s, err := activitystore.Open(*reopenChild, storeOptions(false, clock))
			if err != nil {
				return err
			}
			defer s.Close()
			r.OpenMS = ms(time.Since(t0))
			page, err := s.Query().Limit(50).All(ctx)
			if err != nil {
				return err
			}
			if len(page.Activities) != 50 {
				return fmt.Errorf("Q1 returned %d activities", len(page.Activities))
			}
			r.FirstMS = ms(time.Since(t0))
			t1 := time.Now()
			if _, err := s.Query().Users(*childUser).Limit(50).All(ctx); err != nil {
				return err
			}
			r.Q3lMS = ms(time.Since(t1))
			st, err := s.Stats(ctx)
			if err != nil {
				return err
			}
			r.RebuiltActs, r.OpenSegments = st.RebuiltActivities, st.OpenSegments
			return nil
		}()
		if err != nil {
			r.Err = err.Error()
		}
		r.PeakRSSMB = peakRSS()
		json.NewEncoder(os.Stdout).Encode(r)
		return true
	case *measureCmd:
		// A fresh, small process runs the command: the peak RSS the kernel
		// reports for a child starts from its parent's size at fork.
		var r reopenResult
		args := flag.Args()
		if len(args) == 0 {
			r.Err = "no command"
		} else {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				r.Err = err.Error()
			}
			r.WallMS = ms(time.Since(t0))
			r.PeakRSSMB = childRSS(cmd.ProcessState)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		return true
	case *appendChild != "":
		s, err := activitystore.Open(*appendChild, storeOptions(false, clock))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Activities into the newest window, as a live service appends,
		// until the parent kills the process: a type and user no bench
		// query selects, so that only the unfiltered newest 50 can see
		// them.
		batch := make([]activitystore.Activity, 10)
		for i := 0; ; i++ {
			time.Sleep(5 * time.Millisecond)
			for j := range batch {
				batch[j] = activitystore.Activity{
					Type: "bench.reopen", Module: "bench", Action: "append",
					Time:    now.Add(-2*time.Hour + time.Duration(i*len(batch)+j)*time.Millisecond),
					Details: json.RawMessage(`{"ip":"10.0.0.1"}`),
				}
			}
			if _, err := s.Append(context.Background(), batch...); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if i == 0 {
				fmt.Println("appending")
			}
		}
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reopen runs a child on dir and returns its figures.
func reopen(c *config, d *dataset, dir, what string) reopenResult {
	exe, err := os.Executable()
	if err != nil {
		return reopenResult{Case: what, Err: err.Error()}
	}
	user := d.userName(2500)
	cmd := exec.Command(exe, "-reopen-child", dir, "-child-now", fmt.Sprint(d.now().UnixNano()), "-child-user", user)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	var r reopenResult
	if jerr := json.Unmarshal(out, &r); jerr != nil && err == nil {
		err = jerr
	}
	r.Case, r.WallMS = what, ms(wall)
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// killDuringAppends runs an appending child on dir, SIGKILLs it after a
// while, and returns once it is gone.
func killDuringAppends(d *dataset, dir string, after time.Duration) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-append-child", dir, "-child-now", fmt.Sprint(d.now().UnixNano()))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	buf := make([]byte, 64)
	if n, _ := stdout.Read(buf); !strings.HasPrefix(string(buf[:n]), "appending") {
		cmd.Process.Kill()
		cmd.Wait()
		return errors.New("the appending child did not start")
	}
	time.Sleep(after)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return nil
}

// cliQuery runs `activitystore query --user U` on dir with the command
// built from this repository, and returns its figures; an error when the
// command cannot be built (the bench runs outside the repository).
func cliQuery(c *config, d *dataset, dir string) reopenResult {
	r := reopenResult{Case: "activitystore query --user (CLI)"}
	bin := filepath.Join(c.dir, "activitystore-cli")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/activitystore/activitystore/cmd/activitystore").CombinedOutput(); err != nil {
		r.Err = fmt.Sprintf("cannot build the command: %v %s", err, strings.TrimSpace(string(out)))
		return r
	}
	exe, err := os.Executable()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	cmd := exec.Command(exe, "-measure-cmd", "--", bin, "--dir", dir, "query", "--user", d.userName(2500), "--limit", "50")
	// The command writes its next cursor to standard error: kept out of
	// the bench's output, and shown only when the command fails.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	r.Case, r.FirstMS = "activitystore query --user (CLI)", r.WallMS
	if err != nil {
		r.Err = err.Error()
	}
	if r.Err != "" {
		r.Err = strings.TrimSpace(r.Err + ": " + stderr.String())
	}
	return r
}

// childRSS returns the peak resident set of a finished child in MB.
func childRSS(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024
	}
	return 0
}
