package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/s3test"
)

// The compaction phase runs where -archives says: on the loaded store with
// its archives in a local folder, and on a copy of it (Store.Backup, made
// before the local compaction) with its archives in a bucket of a SeaweedFS
// server the bench starts, then again through OpenReader, a read-only node
// over that bucket.

// Archive locations, in table order.
const (
	locLocal  = "local"
	locS3     = "s3"
	locReader = "s3 reader"
)

// parseArchives parses the -archives flag: local, s3 or both, returned in
// that order.
func parseArchives(v string) ([]string, error) {
	locs := strings.Split(v, ",")
	for _, loc := range locs {
		if loc != locLocal && loc != locS3 {
			return nil, fmt.Errorf("-archives: unknown location %q (local, s3, or local,s3)", loc)
		}
	}
	var out []string
	for _, loc := range []string{locLocal, locS3} {
		if slices.Contains(locs, loc) {
			out = append(out, loc)
		}
	}
	return out, nil
}

// archivesAt reports whether the compaction phase runs with its archives at
// loc; by default only local.
func (c *config) archivesAt(loc string) bool {
	if len(c.archives) == 0 {
		return loc == locLocal
	}
	return slices.Contains(c.archives, loc)
}

// s3Result is the compaction phase with the archives in a bucket.
type s3Result struct {
	StartSeconds       float64            `json:"server_start_seconds"` // SeaweedFS, until it takes writes
	Compaction         *compaction        `json:"compaction,omitempty"`
	Archived           map[string]latency `json:"archived_queries"`    // the writing store
	ReaderOpenSeconds  float64            `json:"reader_open_seconds"` // OpenReader: list the bucket, read each footer
	Reader             map[string]latency `json:"reader_queries"`      // the read-only node
	CompactionRequests *s3Requests        `json:"compaction_requests,omitempty"`
	QueryRequests      *s3Requests        `json:"query_requests,omitempty"`  // the writing store's archived queries
	ReaderRequests     *s3Requests        `json:"reader_requests,omitempty"` // OpenReader and its queries
}

// s3Requests counts the HTTP requests a store made to the bucket.
type s3Requests struct {
	ByMethod map[string]int64 `json:"by_method"`
	// Failed counts the requests that failed in a way the store retries:
	// a network error, a timeout, a 5xx, 408 or 429 answer.
	Failed    int64 `json:"failed"`
	SentBytes int64 `json:"sent_bytes"` // request bodies
}

func (r *s3Requests) total() int64 {
	var n int64
	for _, v := range r.ByMethod {
		n += v
	}
	return n
}

func (r *s3Requests) String() string {
	if r == nil {
		return "-"
	}
	methods := make([]string, 0, len(r.ByMethod))
	for m := range r.ByMethod {
		methods = append(methods, m)
	}
	sort.Slice(methods, func(i, j int) bool { return r.ByMethod[methods[i]] > r.ByMethod[methods[j]] })
	parts := make([]string, len(methods))
	for i, m := range methods {
		parts[i] = comma(float64(r.ByMethod[m])) + " " + m
	}
	return fmt.Sprintf("%s requests (%s), %s failed", comma(float64(r.total())), strings.Join(parts, ", "), comma(float64(r.Failed)))
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	r    s3Requests
}

func newCountingTransport() (*countingTransport, error) {
	base, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, err
	}
	return &countingTransport{base: base, r: s3Requests{ByMethod: map[string]int64{}}}, nil
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	failed := err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	t.mu.Lock()
	t.r.ByMethod[req.Method]++
	if req.ContentLength > 0 {
		t.r.SentBytes += req.ContentLength
	}
	if failed {
		t.r.Failed++
	}
	t.mu.Unlock()
	return resp, err
}

// take returns the counts since the last take.
func (t *countingTransport) take() *s3Requests {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.r
	t.r = s3Requests{ByMethod: map[string]int64{}}
	return &r
}

// s3Bench is the SeaweedFS server of the bench, its bucket, and the copy of
// the loaded store that compacts into it.
type s3Bench struct {
	srv         *s3test.Server
	opts        activitystore.S3Options
	dir         string // the copy of the loaded store
	stopSignals func()
	start       time.Duration
	open        []*activitystore.Store // closed by close
}

// startS3 starts SeaweedFS in the working directory, makes a bucket, and
// copies s, not yet compacted, for the S3 run. The caller calls close,
// which stops the server; an interrupt (SIGINT, SIGTERM) stops it too.
func startS3(ctx context.Context, c *config, s *activitystore.Store) (_ *s3Bench, err error) {
	bar := c.bar(1, "starting SeaweedFS")
	t0 := time.Now()
	srv, err := s3test.Launch(filepath.Join(c.dir, "seaweedfs"))
	bar.Finish()
	if err != nil {
		return nil, err
	}
	b := &s3Bench{srv: srv, start: time.Since(t0), dir: filepath.Join(c.dir, "s3", sysOurs)}
	b.stopSignals = stopOnSignal(srv)
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	bucket, err := srv.MakeBucket(ctx)
	if err != nil {
		return nil, err
	}
	b.opts = activitystore.S3Options{Endpoint: srv.Endpoint, Insecure: true, Bucket: bucket, Prefix: "bench", Region: "us-east-1",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	// A pebble checkpoint: its tables are hard links, so the copy costs
	// little time and space. A kept working directory may hold an old one.
	if err := os.RemoveAll(b.dir); err != nil {
		return nil, err
	}
	if err := s.Backup(ctx, b.dir); err != nil {
		return nil, fmt.Errorf("copy of the store for s3: %w", err)
	}
	return b, nil
}

// stopOnSignal stops srv when the process is interrupted, then lets the
// signal end the process as it would have. The returned function undoes it.
func stopOnSignal(srv *s3test.Server) func() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "\nbench: %v: stopping SeaweedFS\n", sig)
			srv.Stop()
			signal.Stop(sigs)
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
		})
	}
}

// close closes the stores still open and stops the server.
func (b *s3Bench) close() {
	for _, s := range b.open {
		s.Close()
	}
	b.open = nil
	b.stopSignals()
	b.srv.Stop()
}

// run compacts the copy into the bucket and measures the archived queries
// on it, then on a read-only node over the bucket, into res.S3.
func (b *s3Bench) run(ctx context.Context, c *config, d *dataset, res *results) error {
	r := &s3Result{StartSeconds: b.start.Seconds(), Archived: map[string]latency{}, Reader: map[string]latency{}}
	res.S3 = r
	tr, err := newCountingTransport()
	if err != nil {
		return err
	}
	so := b.opts
	so.Transport = tr
	o := storeOptions(false, d.now)
	o.S3 = &so
	s, err := activitystore.Open(b.dir, o)
	if err != nil {
		return fmt.Errorf("open the store with S3 archives: %w", err)
	}
	b.open = append(b.open, s)
	tr.take() // the claim of the node folder
	if r.Compaction, err = compactStore(ctx, c, d, s, "compaction, s3"); err != nil {
		return fmt.Errorf("compaction into s3: %w", err)
	}
	r.CompactionRequests = tr.take()
	if err := res.save(c.jsonPath); err != nil {
		return err
	}
	if err := archivedQueries(ctx, c, d, &ours{s: s}, "s3", r.Archived, res); err != nil {
		return err
	}
	r.QueryRequests = tr.take()
	// The reader alone, as a query node would run: the writer's caches
	// are freed first.
	b.open = b.open[:0]
	if err := s.Close(); err != nil {
		return err
	}

	rt, err := newCountingTransport()
	if err != nil {
		return err
	}
	ro := b.opts
	ro.Transport = rt
	t0 := time.Now()
	rd, err := activitystore.OpenReader(&activitystore.Options{S3: &ro, Now: d.now, PollEvery: -1})
	if err != nil {
		return fmt.Errorf("open a reader over the bucket: %w", err)
	}
	r.ReaderOpenSeconds = time.Since(t0).Seconds()
	b.open = append(b.open, rd)
	if err := archivedQueries(ctx, c, d, &ours{s: rd}, "s3 reader", r.Reader, res); err != nil {
		return err
	}
	r.ReaderRequests = rt.take()
	b.open = b.open[:0]
	return rd.Close()
}

// compactStore runs Compact on s, every window being cold, and returns its
// throughput and the size of the archives.
func compactStore(ctx context.Context, c *config, d *dataset, s *activitystore.Store, desc string) (*compaction, error) {
	bar := c.bar(1, desc)
	t0 := time.Now()
	err := s.Compact(ctx)
	el := time.Since(t0).Seconds()
	bar.Finish()
	if err != nil {
		return nil, err
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &compaction{Seconds: el, PerSecond: float64(st.ArchivedActivities) / el, MBPerSec: float64(st.ArchiveBytes) / el / 1e6,
		ArchiveBytes: st.ArchiveBytes, RatioJSON: float64(st.ArchiveBytes) / float64(d.jsonBytes),
		BytesPerActiv: float64(st.ArchiveBytes) / float64(st.ArchivedActivities)}, nil
}

// archivedQueries runs the query table on sys, whose data is in archives at
// where, into into, saving res after each query.
func archivedQueries(ctx context.Context, c *config, d *dataset, sys system, where string, into map[string]latency, res *results) error {
	for _, q := range queries {
		bar := c.bar(1, q.id+" archived, "+where)
		// An archived row that reads and decompresses much per run (a
		// large data set with a small cache) stops after a while, as a
		// comparator's does.
		var l latency
		var err error
		// Labeled, so a profile can be cut by query: -tagfocus query=Q1.
		pprof.Do(ctx, pprof.Labels("query", q.id, "archives", where), func(ctx context.Context) {
			l, err = measure(ctx, c, d, sys, q, c.archivedBudget)
		})
		bar.Finish()
		if err != nil {
			return fmt.Errorf("%s on archives (%s): %w", q.id, where, err)
		}
		into[q.id] = l
		if err := res.save(c.jsonPath); err != nil {
			return err
		}
	}
	return nil
}
