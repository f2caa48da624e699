// Command loadhttp measures a running activitystore server over HTTP.
//
// It generates --n realistic activities (internal/gen, ending now), posts
// them to POST /v1/activities as NDJSON, --batch lines per request from
// --import-clients concurrent clients, and prints the ingest throughput in
// activities/s and MB/s of request bodies. Then --clients concurrent clients
// each send --requests GET /v1/activities?type=T&limit=50, T drawn from the
// types of the generated activities as often as they occur, and it prints
// the latency percentiles (p50, p90, p99, max) and the requests per second.
//
//	activitystore serve --dir /tmp/load &
//	go run ./cmd/loadhttp --server http://127.0.0.1:8080
//
// The activities are generated before the clock starts; the server should
// run on an empty store, or one where their types are not unusual.
//
// --mix bench sends instead the query mix of the bench suite (bench/README.md):
// newest 50 with no filter, a common and a rare type, the heaviest and a
// light user, type and user, three types, a type within one day, a count of
// a type over 24h, counts by type over 7 days, a skip of 10000, and module,
// type and user, the times relative to --end. With --n 0 it posts nothing,
// to query a store loaded before, such as the bench's or one filled by
// activitystore import:
//
//	go run ./cmd/loadhttp --n 0 --mix bench --end 2026-11-01T00:00:00Z
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is the command line, and the data generated from it.
type config struct {
	server, token  string
	n, batch       int
	importClients  int
	clients, reqs  int
	mix            string
	end            time.Time
	typesFromData  []string // the type of each generated activity
	bodies         [][]byte // the NDJSON bodies of the POSTs
	bodyBytes      int64
	activitiesSent int
}

// run parses args, runs the load and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("loadhttp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "the URL of the server")
	fs.StringVar(&c.token, "token", "", "a bearer token for the server (an admin's, to post every user's activities)")
	fs.IntVar(&c.n, "n", 200_000, "activities to post")
	fs.IntVar(&c.batch, "batch", 5000, "NDJSON lines per POST")
	fs.IntVar(&c.importClients, "import-clients", 4, "concurrent clients posting")
	fs.IntVar(&c.clients, "clients", 8, "concurrent clients querying")
	fs.IntVar(&c.reqs, "requests", 2000, "GET requests per querying client")
	fs.StringVar(&c.mix, "mix", "types", "the queries: types (newest 50 of a type drawn from the data) or bench (the bench suite's mix)")
	end := fs.String("end", "", "bench mix: the time the data ends, RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c.end = time.Now().UTC()
	if *end != "" {
		t, err := time.Parse(time.RFC3339, *end)
		if err != nil {
			fmt.Fprintf(stderr, "loadhttp: --end %q: want an RFC 3339 time\n", *end)
			return 2
		}
		c.end = t
	}
	if err := c.check(fs.Args()); err != nil {
		fmt.Fprintln(stderr, "loadhttp:", err)
		return 2
	}
	if err := c.load(ctx, stdout); err != nil {
		fmt.Fprintln(stderr, "loadhttp:", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}

func (c *config) check(args []string) error {
	switch {
	case len(args) > 0:
		return fmt.Errorf("unexpected argument %q", args[0])
	case c.n < 0 || (c.n == 0 && c.mix != "bench"):
		return fmt.Errorf("--n %d: want 1 or more (0 only with --mix bench)", c.n)
	case c.mix != "types" && c.mix != "bench":
		return fmt.Errorf("--mix %q: want types or bench", c.mix)
	case c.batch < 1 || c.batch > activitystore.MaxBatch:
		return fmt.Errorf("--batch %d: want 1 to %d", c.batch, activitystore.MaxBatch)
	case c.importClients < 1:
		return fmt.Errorf("--import-clients %d: want 1 or more", c.importClients)
	case c.clients < 1:
		return fmt.Errorf("--clients %d: want 1 or more", c.clients)
	case c.reqs < 1:
		return fmt.Errorf("--requests %d: want 1 or more", c.reqs)
	}
	u, err := url.Parse(c.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want a URL like http://127.0.0.1:8080", c.server)
	}
	c.server = strings.TrimSuffix(c.server, "/")
	return nil
}

// load runs the two phases and prints their results.
func (c *config) load(ctx context.Context, stdout io.Writer) error {
	clients := max(c.clients, c.importClients)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * clients
	tr.MaxIdleConnsPerHost = 2 * clients
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	if err := c.healthy(ctx, hc); err != nil {
		return err
	}
	if c.n > 0 {
		c.generate()
		// Import.
		start := time.Now()
		err := c.each(ctx, c.importClients, len(c.bodies), func(ctx context.Context, i int) error {
			return c.post(ctx, hc, c.bodies[i])
		})
		if err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		fmt.Fprintf(stdout, "import: %d activities in %d POSTs of up to %d lines, %d clients, %.2fs: %.0f activities/s, %.1f MB/s\n",
			c.activitiesSent, len(c.bodies), c.batch, c.importClients, secs,
			float64(c.activitiesSent)/secs, float64(c.bodyBytes)/secs/1e6)
	}

	// Queries.
	lat := make([][]time.Duration, c.clients)
	start := time.Now()
	err := c.each(ctx, c.clients, c.clients, func(ctx context.Context, client int) error {
		r := rand.New(rand.NewPCG(uint64(client), 0x10ad))
		lat[client] = make([]time.Duration, 0, c.reqs)
		for range c.reqs {
			var path string
			if c.mix == "bench" {
				path = c.benchQuery(r)
			} else {
				path = "/v1/activities?limit=50&type=" + url.QueryEscape(c.typesFromData[r.IntN(len(c.typesFromData))])
			}
			t0 := time.Now()
			if err := c.query(ctx, hc, path); err != nil {
				return err
			}
			lat[client] = append(lat[client], time.Since(t0))
		}
		return nil
	})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	what := "GET /v1/activities?type=T&limit=50"
	if c.mix == "bench" {
		what = "GETs of the bench mix"
	}
	fmt.Fprintf(stdout, "query: %d %s, %d clients, %.2fs: %.0f requests/s\n",
		len(all), what, c.clients, secs, float64(len(all))/secs)
	fmt.Fprintf(stdout, "latency: p50 %s  p90 %s  p99 %s  max %s\n",
		round(percentile(all, 0.50)), round(percentile(all, 0.90)), round(percentile(all, 0.99)), round(all[len(all)-1]))
	return nil
}

// healthy checks that the server answers /healthz.
func (c *config) healthy(ctx context.Context, hc *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.server+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/healthz: %s", c.server, resp.Status)
	}
	return nil
}

// lineJSON is the JSON line of one generated activity: no id, which the
// store assigns.
type lineJSON struct {
	Time     time.Time       `json:"time"`
	Type     string          `json:"type"`
	UserID   string          `json:"user_id,omitempty"`
	Module   string          `json:"module,omitempty"`
	Action   string          `json:"action,omitempty"`
	APICall  string          `json:"apicall,omitempty"`
	Resource string          `json:"resource,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
}

// generate makes the activities, 30 days up to now, and the request bodies.
func (c *config) generate() {
	g := gen.New(gen.Config{N: c.n, End: time.Now().UTC()})
	c.typesFromData = make([]string, 0, c.n)
	var a activitystore.Activity
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	lines := 0
	for g.Next(&a) {
		enc.Encode(lineJSON{Time: a.Time, Type: a.Type, UserID: a.UserID, Module: a.Module, Action: a.Action,
			APICall: a.APICall, Resource: a.Resource, Details: a.Details})
		c.typesFromData = append(c.typesFromData, a.Type)
		if lines++; lines == c.batch {
			c.addBody(&body, lines)
			lines = 0
		}
	}
	if lines > 0 {
		c.addBody(&body, lines)
	}
}

func (c *config) addBody(body *bytes.Buffer, lines int) {
	c.bodies = append(c.bodies, bytes.Clone(body.Bytes()))
	c.bodyBytes += int64(body.Len())
	c.activitiesSent += lines
	body.Reset()
}

// each runs fn(i) for i in [0, n) on workers goroutines and returns the
// first error; the others then stop.
func (c *config) each(ctx context.Context, workers, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

func (c *config) post(ctx context.Context, hc *http.Client, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+"/v1/activities", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	c.auth(req)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /v1/activities: %s: %s", resp.Status, b)
	}
	return nil
}

// benchQuery returns the path and query of one request of the bench mix.
func (c *config) benchQuery(r *rand.Rand) string {
	kinds := gen.Kinds
	var userKinds []gen.Kind
	for _, k := range kinds {
		if !k.System {
			userKinds = append(userKinds, k)
		}
	}
	user := func(rank int) string { return fmt.Sprintf("user-%05d", rank) }
	day := func(d time.Duration) string { return c.end.Add(-d).Format(time.RFC3339) }
	q := url.Values{"limit": {"50"}}
	path := "/v1/activities"
	switch r.IntN(11) {
	case 0: // Q1
	case 1: // Q2c
		q.Set("type", kinds[0].Type)
	case 2: // Q2r
		q.Set("type", kinds[len(kinds)-1].Type)
	case 3: // Q3h
		q.Set("user", user(0))
	case 4: // Q3l
		q.Set("user", user(2000+r.IntN(1000)))
	case 5: // Q4
		q.Set("type", userKinds[1+r.IntN(4)].Type)
		q.Set("user", user(r.IntN(20)))
	case 6: // Q5
		for _, i := range r.Perm(len(kinds))[:3] {
			q.Add("type", kinds[i].Type)
		}
	case 7: // Q6
		d := time.Duration(1+r.IntN(30)) * 24 * time.Hour
		q.Set("type", kinds[r.IntN(8)].Type)
		q.Set("since", day(d))
		q.Set("until", day(d-24*time.Hour))
	case 8: // Q7
		path = "/v1/count"
		q = url.Values{"type": {kinds[r.IntN(len(kinds))].Type}, "since": {day(24 * time.Hour)}}
	case 9: // Q8
		path = "/v1/count_by"
		q = url.Values{"field": {"type"}, "since": {day(7 * 24 * time.Hour)}}
	case 10: // Q9 and Q10
		if r.IntN(2) == 0 {
			q.Set("skip", "10000")
		} else {
			k := userKinds[r.IntN(6)]
			q.Set("type", k.Type)
			q.Set("module", k.Module)
			q.Set("user", user(r.IntN(20)))
		}
	}
	return path + "?" + q.Encode()
}

func (c *config) query(ctx context.Context, hc *http.Client, path string) error {
	u := c.server + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	c.auth(req)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (c *config) auth(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// percentile returns the q-quantile of sorted, by the nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// round keeps three significant digits or so of a latency.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
