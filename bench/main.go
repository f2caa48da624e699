// Command bench measures activitystore side by side with raw pebble and
// SQLite on a generated data set of platform activity, and prints a table.
//
//	go run ./bench                       # 1M activities, every phase
//	go run ./bench -n 10000000 -json out.json
//	go run ./bench -only query -runs 2000
//
// See bench/README.md for what each row means.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
)

// phases, in the order they run. The load always runs: the others need it.
var phases = []string{"ingest", "query", "open", "reopen", "compact"}

type config struct {
	n, ingestN     int
	seed           uint64
	dir            string
	keep           bool
	only           map[string]bool
	jsonPath       string
	runs           int
	budget         time.Duration
	progress       bool
	systems        []string      // the systems to load and query, in systemNames order
	cpuProfile     string        // CPU profile of the hot query phase, if set
	cpuProfileArch string        // CPU profile of the query phase on local archives, if set
	cpuProfileLoad string        // CPU profile of the store's load, if set
	settle         time.Duration // longest wait for the store to settle after the load; default 5 minutes
	archivedBudget time.Duration // time an archived query row may take before it stops short of runs
	archives       []string      // where the compaction phase puts the archives: local, s3; default local
}

func main() {
	var c config
	var only string
	flag.IntVar(&c.n, "n", 1_000_000, "activities in the data set")
	flag.IntVar(&c.ingestN, "ingest-n", 200_000, "activities for each extra ingest run (Sync, 4 writers)")
	flag.Uint64Var(&c.seed, "seed", 1, "generator seed")
	flag.StringVar(&c.dir, "dir", "", "working directory (default: a temporary one)")
	flag.BoolVar(&c.keep, "keep", false, "keep the working directory")
	flag.StringVar(&only, "only", "", "run only these phases, comma separated: "+strings.Join(phases, ","))
	flag.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.IntVar(&c.runs, "runs", 1000, "runs per query and system")
	flag.DurationVar(&c.budget, "budget", 3*time.Second, "time a comparator may spend on one query before it stops short of -runs")
	flag.DurationVar(&c.archivedBudget, "archived-budget", 30*time.Second, "time the store may spend on one query on archives before it stops short of -runs")
	flag.BoolVar(&c.progress, "progress", true, "show progress bars on standard error")
	systems := flag.String("systems", "pebble,sqlite", "comparators to load and query beside activitystore, comma separated: pebble, sqlite, or none")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the hot query phase to this file")
	flag.StringVar(&c.cpuProfileLoad, "cpuprofile-load", "", "write a CPU profile of the store's load (the NoSync, 1-writer row) to this file")
	flag.StringVar(&c.cpuProfileArch, "cpuprofile-archived", "", "write a CPU profile of the query phase on local archives to this file")
	archives := flag.String("archives", locLocal, "where the compaction phase puts the archives: local, s3 (a SeaweedFS server the bench starts), or local,s3")
	flag.Parse()
	if runChild() {
		return
	}
	if only != "" {
		c.only = map[string]bool{}
		for _, p := range strings.Split(only, ",") {
			if !slices.Contains(phases, p) {
				log.Fatalf("bench: -only: unknown phase %q (phases: %s)", p, strings.Join(phases, ", "))
			}
			c.only[p] = true
		}
	}
	c.systems = []string{sysOurs}
	for _, name := range strings.Split(*systems, ",") {
		switch name {
		case "pebble":
			c.systems = append(c.systems, sysPebble)
		case "sqlite":
			c.systems = append(c.systems, sysSQLite)
		case "none", "":
		default:
			log.Fatalf("bench: -systems: unknown comparator %q (pebble, sqlite or none)", name)
		}
	}
	var err error
	if c.archives, err = parseArchives(*archives); err != nil {
		log.Fatal("bench: ", err)
	}
	if c.n < 1000 || c.ingestN < 1000 || c.runs < 1 {
		log.Fatal("bench: -n and -ingest-n must be at least 1000, -runs at least 1")
	}
	res, err := run(context.Background(), &c)
	if err != nil {
		log.Fatal("bench: ", err)
	}
	res.print(os.Stdout)
	res.Complete = true
	if err := res.save(c.jsonPath); err != nil {
		log.Fatal("bench: ", err)
	}
}

func (c *config) want(phase string) bool { return c.only == nil || c.only[phase] }

// bar returns a progress bar of total steps on standard error.
func (c *config) bar(total int, desc string) *progressbar.ProgressBar {
	w := io.Discard
	if c.progress {
		w = os.Stderr
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-34s", desc)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// holdMax is the largest data set held in memory; a larger one is
// generated again from the seed for each load, so that it can outgrow the
// machine's memory.
const holdMax = 12_000_000

// dataset is the generated activities, in batches of 1000, oldest first in
// generation order: all of them when there are at most holdMax, else only
// the first (for the extra ingest runs), with the IDs the store gave them
// (for the comparators to store under).
type dataset struct {
	cfg       gen.Config
	n, days   int
	end       time.Time
	jsonBytes int64
	g         *gen.Generator // for user names
	ids       []activitystore.ID
	prefix    [][]activitystore.Activity // the first batches, or all of them
	held      bool                       // prefix holds them all
}

func (d *dataset) userName(rank int) string { return d.g.UserName(rank) }

// batches returns how many batches of 1000 the data set makes.
func (d *dataset) batches() int { return (d.n + 999) / 1000 }

// each generates the data set again and calls fn with each batch, in order,
// with the IDs the store gave (once it has loaded them). fn may keep the
// batch.
func (d *dataset) each(fn func([]activitystore.Activity) error) error {
	if d.held {
		for k, b := range d.prefix {
			if k*1000 < len(d.ids) {
				for i := range b {
					b[i].ID = d.ids[k*1000+i]
				}
			}
			if err := fn(b); err != nil {
				return err
			}
		}
		return nil
	}
	g := gen.New(d.cfg)
	var a activitystore.Activity
	cur := make([]activitystore.Activity, 0, 1000)
	k := 0
	for g.Next(&a) {
		a.Details = slices.Clone(a.Details)
		if k < len(d.ids) {
			a.ID = d.ids[k]
		}
		k++
		if cur = append(cur, a); len(cur) == cap(cur) {
			if err := fn(cur); err != nil {
				return err
			}
			cur = make([]activitystore.Activity, 0, 1000)
		}
	}
	if len(cur) > 0 {
		return fn(cur)
	}
	return nil
}

// generate runs the generator once to measure the data set as JSON lines
// and keep its first batches.
func generate(c *config) (*dataset, error) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	d := &dataset{n: c.n, days: 30, end: end}
	d.cfg = gen.Config{N: c.n, Seed: c.seed, End: end, Days: d.days}
	d.g = gen.New(d.cfg)
	bar := c.bar(c.n, "generating")
	defer bar.Finish()
	keep := c.ingestN / 1000
	if c.n <= holdMax {
		keep = d.batches()
	}
	defer func() { d.held = c.n <= holdMax }()
	var buf []byte
	err := d.each(func(batch []activitystore.Activity) error {
		for i := range batch {
			a := batch[i]
			a.ID = activitystore.ID{1} // as long in JSON as the real ID to come
			buf = a.AppendJSON(buf[:0])
			d.jsonBytes += int64(len(buf)) + 1
		}
		if len(d.prefix) < keep {
			d.prefix = append(d.prefix, batch)
		}
		bar.Add(len(batch))
		return nil
	})
	return d, err
}

func (d *dataset) now() time.Time { return d.end.Add(time.Hour) }

// ingestResult is one ingest run.
type ingestResult struct {
	Mode       string  `json:"mode"`
	Writers    int     `json:"writers"`
	System     string  `json:"system"`
	Activities int     `json:"activities"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"activities_per_second"`
	MBPerSec   float64 `json:"mb_per_second"` // of the activities as JSON lines
}

// ingest appends the batches each yields with writers goroutines, n
// batches in all, and times it. It takes the batches in chunks of 1000 and
// times only their appends: a data set generated on the fly is generated
// between chunks, not while the writers run. after, if set, sees each batch
// once it is appended.
func ingest(ctx context.Context, c *config, sys system, each func(func([]activitystore.Activity) error) error, n, writers int, desc string, jsonPer float64, after func([]activitystore.Activity)) (ingestResult, error) {
	bar := c.bar(n, desc)
	defer bar.Finish()
	var mu sync.Mutex
	var first error
	var el time.Duration
	count := 0
	run := func(chunk [][]activitystore.Activity) {
		work := make(chan []activitystore.Activity, writers)
		var wg sync.WaitGroup
		start := time.Now()
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range work {
					if err := sys.append(ctx, b); err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
					} else if after != nil {
						after(b)
					}
					bar.Add(1)
				}
			}()
		}
		for _, b := range chunk {
			work <- b
			count += len(b)
		}
		close(work)
		wg.Wait()
		el += time.Since(start)
	}
	var chunk [][]activitystore.Activity
	err := each(func(b []activitystore.Activity) error {
		if chunk = append(chunk, b); len(chunk) == 1000 {
			run(chunk)
			chunk = chunk[:0]
		}
		return nil
	})
	if len(chunk) > 0 {
		run(chunk)
	}
	if err == nil {
		err = first
	}
	sec := el.Seconds()
	return ingestResult{Writers: writers, Activities: count, Seconds: sec, PerSecond: float64(count) / sec, MBPerSec: float64(count) * jsonPer / sec / 1e6}, err
}

// latency is one query's figures on one system.
type latency struct {
	Runs    int     `json:"runs"`
	P50     float64 `json:"p50_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	Results float64 `json:"mean_results"`
	First   float64 `json:"first_us"` // the first run, before any cache held what it reads
}

// measure runs q on sys: c.runs times, or fewer once budget has passed
// (and 10 runs are done), when budget is positive. Every system sees the
// same sequence of parameters.
func measure(ctx context.Context, c *config, d *dataset, sys system, q *query, budget time.Duration) (latency, error) {
	r := rand.New(rand.NewPCG(c.seed, uint64(len(q.id))*7919))
	var lat []time.Duration
	total := 0
	start := time.Now()
	for i := 0; i < c.runs; i++ {
		p := q.draw(r, d)
		t0 := time.Now()
		n, err := sys.run(ctx, q, &p)
		lat = append(lat, time.Since(t0))
		if err != nil {
			return latency{}, fmt.Errorf("%s: %w", q.id, err)
		}
		total += n
		if budget > 0 && time.Since(start) > budget && i >= 9 {
			break
		}
	}
	first := float64(lat[0].Nanoseconds()) / 1e3
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	return latency{Runs: len(lat), P50: at(0.5), P99: at(0.99), P999: at(0.999), Results: float64(total) / float64(len(lat)), First: first}, nil
}

// results is everything one bench run measured.
type results struct {
	N             int                           `json:"n"`
	Seed          uint64                        `json:"seed"`
	JSONBytes     int64                         `json:"json_bytes"`
	Ingest        []ingestResult                `json:"ingest"`
	Queries       map[string]map[string]latency `json:"queries"`          // query ID -> system -> figures
	Archived      map[string]latency            `json:"archived_queries"` // query ID -> activitystore on local archives
	Disk          map[string]float64            `json:"disk_bytes_per_activity"`
	Index         map[string]float64            `json:"index_bytes_per_activity"` // field -> bytes
	SettleSeconds float64                       `json:"settle_seconds"`           // after the load, until sealed and compacted
	OpenSeconds   float64                       `json:"open_seconds"`
	Reopen        []reopenResult                `json:"reopen,omitempty"`
	Compaction    *compaction                   `json:"compaction,omitempty"` // with local archives
	S3            *s3Result                     `json:"s3,omitempty"`         // with the archives in a bucket (-archives s3)
	PeakRSSMB     float64                       `json:"peak_rss_mb"`
	Complete      bool                          `json:"complete"` // false in the file written after each phase
}

// save writes r as JSON to path, if set.
func (r *results) save(path string) error {
	if path == "" {
		return nil
	}
	r.PeakRSSMB = peakRSS()
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	return err
}

type compaction struct {
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"activities_per_second"`
	MBPerSec      float64 `json:"archive_mb_per_second"` // archive bytes written (local) or uploaded (s3) per second
	ArchiveBytes  int64   `json:"archive_bytes"`
	RatioJSON     float64 `json:"archive_to_json"`
	BytesPerActiv float64 `json:"bytes_per_activity"`
}

func run(ctx context.Context, c *config) (*results, error) {
	if c.systems == nil {
		c.systems = systemNames
	}
	if c.settle == 0 {
		c.settle = 5 * time.Minute
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "activitystore-bench")
		if err != nil {
			return nil, err
		}
		c.dir = d
	}
	if !c.keep {
		defer os.RemoveAll(c.dir)
	}
	d, err := generate(c)
	if err != nil {
		return nil, err
	}
	res := &results{N: c.n, Seed: c.seed, JSONBytes: d.jsonBytes, Queries: map[string]map[string]latency{},
		Archived: map[string]latency{}, Disk: map[string]float64{}, Index: map[string]float64{}}
	jsonPer := float64(d.jsonBytes) / float64(d.n)

	// Load: every system takes the whole data set, NoSync, one writer.
	systems := map[string]system{}
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	for _, name := range c.systems {
		dir := filepath.Join(c.dir, "load", name)
		sys, err := openSystem(name, dir, false, d.now)
		if err != nil {
			return nil, err
		}
		systems[name] = sys
		var after func([]activitystore.Activity)
		if o, ok := sys.(*ours); ok {
			o.setIDs = true
			// Room for every ID up front: growing a slice of them inside
			// the timed appends would charge its copies to the store.
			d.ids = make([]activitystore.ID, 0, d.n)
			// One writer: batches are appended in order.
			after = func(b []activitystore.Activity) {
				for _, a := range b {
					d.ids = append(d.ids, a.ID)
				}
			}
		}
		stop := func() {}
		if name == sysOurs && c.cpuProfileLoad != "" {
			if stop, err = startProfile(c.cpuProfileLoad); err != nil {
				return nil, err
			}
		}
		r, err := ingest(ctx, c, sys, d.each, d.batches(), 1, "load "+name, jsonPer, after)
		stop()
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		if o, ok := sys.(*ours); ok {
			o.setIDs = false
			for k, b := range d.prefix { // the comparators store under these IDs
				for i := range b {
					b[i].ID = d.ids[k*1000+i]
				}
			}
		}
		r.Mode, r.System = "NoSync", name
		res.Ingest = append(res.Ingest, r)
	}

	// Before anything is measured, wait until the store has sealed every
	// window and pebble has stopped compacting the load, as in a store that
	// has run for a while: otherwise the first queries measure the
	// background work of the load, and how long the comparators took to load
	// decides how much of it is left.
	o := systems[sysOurs].(*ours)
	t0 := time.Now()
	if err := settle(ctx, o.s, c.settle); err != nil {
		return nil, err
	}
	res.SettleSeconds = time.Since(t0).Seconds()
	// A long run saves what it has after each phase, so that a run cut
	// short still leaves its figures.
	if err := res.save(c.jsonPath); err != nil {
		return nil, err
	}

	if c.want("ingest") {
		sub := func(fn func([]activitystore.Activity) error) error {
			for _, b := range d.prefix[:min(len(d.prefix), c.ingestN/1000)] {
				if err := fn(b); err != nil {
					return err
				}
			}
			return nil
		}
		for _, mode := range []string{"NoSync", "Sync"} {
			for _, writers := range []int{1, 4} {
				if mode == "NoSync" && writers == 1 {
					continue // measured by the load
				}
				for _, name := range c.systems {
					dir := filepath.Join(c.dir, fmt.Sprintf("ingest-%s-%d", mode, writers), name)
					sys, err := openSystem(name, dir, mode == "Sync", d.now)
					if err != nil {
						return nil, err
					}
					r, err := ingest(ctx, c, sys, sub, min(len(d.prefix), c.ingestN/1000), writers, fmt.Sprintf("%s %dw %s", mode, writers, name), jsonPer, nil)
					if cerr := sys.close(); err == nil {
						err = cerr
					}
					if err != nil {
						return nil, fmt.Errorf("ingest %s: %w", name, err)
					}
					r.Mode, r.System = mode, name
					res.Ingest = append(res.Ingest, r)
					os.RemoveAll(dir)
				}
			}
		}
	}

	if err := res.save(c.jsonPath); err != nil {
		return nil, err
	}
	if c.want("query") {
		// The extra ingest runs left garbage: collect it now, not while
		// the first queries run.
		runtime.GC()
		stop, err := startProfile(c.cpuProfile)
		if err != nil {
			return nil, err
		}
		for _, q := range queries {
			res.Queries[q.id] = map[string]latency{}
			for _, name := range c.systems {
				bar := c.bar(1, fmt.Sprintf("%s %s", q.id, name))
				var l latency
				var err error
				// Labeled, so a profile can be cut by query: -tagfocus query=Q1.
				pprof.Do(ctx, pprof.Labels("query", q.id, "system", name), func(ctx context.Context) {
					budget := c.budget
					if name == sysOurs {
						budget = 0
					}
					l, err = measure(ctx, c, d, systems[name], q, budget)
				})
				bar.Finish()
				if err != nil {
					return nil, fmt.Errorf("%s on %s: %w", q.id, name, err)
				}
				res.Queries[q.id][name] = l
			}
		}
		stop()
	}

	// Sizes, then the open time of the populated store.
	st, err := o.s.Stats(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range c.systems {
		res.Disk[name] = float64(dirBytes(filepath.Join(c.dir, "load", name))) / float64(d.n)
	}
	for f, b := range st.IndexBytesByField {
		res.Index[f] = float64(b) / float64(d.n)
	}
	if c.want("open") {
		if err := o.s.Close(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		s, err := activitystore.Open(filepath.Join(c.dir, "load", sysOurs), storeOptions(false, d.now))
		if err != nil {
			return nil, err
		}
		res.OpenSeconds = time.Since(t0).Seconds()
		o.s = s
	}

	if err := res.save(c.jsonPath); err != nil {
		return nil, err
	}
	if c.want("reopen") {
		bar := c.bar(4, "reopen in fresh processes")
		if err := o.s.Close(); err != nil {
			return nil, err
		}
		dir := filepath.Join(c.dir, "load", sysOurs)
		res.Reopen = append(res.Reopen, reopen(c, d, dir, "after the load"))
		bar.Add(1)
		res.Reopen = append(res.Reopen, cliQuery(c, d, dir))
		bar.Add(1)
		if err := killDuringAppends(d, dir, 1500*time.Millisecond); err != nil {
			return nil, err
		}
		bar.Add(1)
		res.Reopen = append(res.Reopen, reopen(c, d, dir, "after SIGKILL during appends"))
		bar.Finish()
		s, err := activitystore.Open(dir, storeOptions(false, d.now))
		if err != nil {
			return nil, err
		}
		o.s = s
	}

	if err := res.save(c.jsonPath); err != nil {
		return nil, err
	}
	if c.want("compact") {
		var s3 *s3Bench
		if c.archivesAt(locS3) {
			// A copy of the store, made before the local compaction,
			// compacts into a bucket.
			if s3, err = startS3(ctx, c, o.s); err != nil {
				return nil, err
			}
			defer s3.close()
		}
		if c.archivesAt(locLocal) {
			if res.Compaction, err = compactStore(ctx, c, d, o.s, "compaction"); err != nil {
				return nil, err
			}
			stop, err := startProfile(c.cpuProfileArch)
			if err != nil {
				return nil, err
			}
			err = archivedQueries(ctx, c, d, o, locLocal, res.Archived, res)
			stop()
			if err != nil {
				return nil, err
			}
		}
		if s3 != nil {
			if err := s3.run(ctx, c, d, res); err != nil {
				return nil, err
			}
			s3.close() // the figures are in; the server is not needed
		}
	}
	res.PeakRSSMB = peakRSS()
	return res, nil
}

// startProfile starts a CPU profile into the file path, if set, and
// returns what stops it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// settle waits until s has no open segment and pebble has run no
// compaction for two seconds, or until limit passes, then collects the
// garbage of the load: the data set is gigabytes of heap, and a collection
// running through the first queries would slow them, not the store.
func settle(ctx context.Context, s *activitystore.Store, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	quiet := 0
	for quiet < 10 && time.Now().Before(deadline) {
		st, err := s.Stats(ctx)
		if err != nil {
			return err
		}
		quiet++
		if st.OpenSegments > 0 || st.CompactionsRunning > 0 {
			quiet = 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	runtime.GC()
	return nil
}

// dirBytes returns the size of the files below dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// peakRSS returns the process's peak resident set in MB (Linux), or 0.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
