package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The abuse soak's settings. The defaults are a smoke for CI; the figures
// in the closing notes come from, e.g.,
//
//	go test ./cmd/activitystore -run TestServeUnderAbuse -v \
//	    -abuse.seconds 20 -abuse.principals 32 -abuse.acts 200
var (
	abuseSeconds    = flag.Float64("abuse.seconds", 1.5, "seconds each phase of TestServeUnderAbuse lasts")
	abusePrincipals = flag.Int("abuse.principals", 4, "hostile principals in TestServeUnderAbuse")
	abuseActs       = flag.Int("abuse.acts", 40, "activities with 60 KiB of details each hostile principal stores first")
)

// serverMemoryBound is the documented bound of the server's memory at the
// default settings (README, "Limits").
const serverMemoryBound = 1 << 30

// TestServeUnderAbuse runs `serve` with its defaults and, phase by phase,
// lets hostile principals do what could blow up or starve it: slow
// uploads, uploads of the largest body, tails that never read while
// activities keep coming, the largest pages on every read route, and
// scrapes of /metrics; then all at once. Through every phase an ordinary
// user reads its newest activities. It records the server's peak resident
// memory per phase, which must stay under serverMemoryBound, and the
// ordinary user's latencies.
func TestServeUnderAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "store")
	var tokens strings.Builder
	tokens.WriteString("admin-token ops admin\ncarol-token carol\n")
	hostile := make([]string, *abusePrincipals)
	for i := range hostile {
		hostile[i] = fmt.Sprintf("hostile-%02d", i)
		fmt.Fprintf(&tokens, "%s-token %s\n", hostile[i], hostile[i])
	}
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokensFile, []byte(tokens.String()), 0o600))
	base, _, pid := startServeBinary(t, bin, nil, "--dir", dir, "--tokens", tokensFile)
	waitHealthy(t, base)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	do := func(ctx context.Context, method, path, token string, body io.Reader, contentLength int64) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != nil {
			req.Header.Set("Content-Type", "application/x-ndjson")
			req.ContentLength = contentLength
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}

	// Each hostile principal stores activities with 60 KiB of details, so
	// that its pages and tails are as heavy as they get; carol a few light
	// ones.
	pad := strings.Repeat("x", 60<<10)
	bigLine := func(user string, i int) string {
		return fmt.Sprintf(`{"type":"data.ingest","user_id":%q,"module":"data","action":"ingest","details":{"i":%d,"pad":%q}}`+"\n", user, i, pad)
	}
	for _, u := range hostile {
		var b strings.Builder
		for i := range *abuseActs {
			b.WriteString(bigLine(u, i))
		}
		code, err := do(t.Context(), http.MethodPost, "/v1/activities", u+"-token", strings.NewReader(b.String()), int64(b.Len()))
		require.NoError(t, err)
		require.Contains(t, []int{http.StatusOK, http.StatusCreated}, code)
	}
	var light strings.Builder
	for i := range 100 {
		fmt.Fprintf(&light, `{"type":"user.login","user_id":"carol","module":"auth","action":"login","details":{"i":%d}}`+"\n", i)
	}
	code, err := do(t.Context(), http.MethodPost, "/v1/activities", "carol-token", strings.NewReader(light.String()), int64(light.Len()))
	require.NoError(t, err)
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, code)

	// A body as large as a POST may be, whose last line is invalid: the
	// server holds the whole batch, then stores nothing.
	var huge bytes.Buffer
	for huge.Len() < int(serveAPIOptions.MaxBodyBytes)-(1<<20) {
		// No user_id: each principal's own.
		fmt.Fprintf(&huge, `{"type":"data.ingest","module":"data","action":"ingest","details":{"pad":%q}}`+"\n", pad)
	}
	huge.WriteString("{\n")

	type result struct {
		phase      string
		peakRSS    int64
		p50, p99   time.Duration
		statuses   map[int]int
		legitFails int
	}
	var results []result

	// phase runs the abusers for the phase's time while carol reads.
	phase := func(name string, abusers ...func(ctx context.Context, count func(int))) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Duration(*abuseSeconds*float64(time.Second)))
		defer cancel()
		var mu sync.Mutex
		statuses := map[int]int{}
		count := func(code int) { mu.Lock(); statuses[code]++; mu.Unlock() }
		var wg sync.WaitGroup
		for _, a := range abusers {
			wg.Go(func() { a(ctx, count) })
		}
		var peak atomic.Int64
		wg.Go(func() {
			for ctx.Err() == nil {
				if rss := residentBytes(pid); rss > peak.Load() {
					peak.Store(rss)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		var lat []time.Duration
		fails := 0
		for ctx.Err() == nil {
			t0 := time.Now()
			code, err := do(context.Background(), http.MethodGet, "/v1/activities?limit=50", "carol-token", nil, 0)
			if err != nil || code != http.StatusOK {
				fails++
				continue
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(10 * time.Millisecond)
		}
		wg.Wait()
		hc.CloseIdleConnections()
		slices.Sort(lat)
		r := result{phase: name, peakRSS: peak.Load(), statuses: statuses, legitFails: fails}
		if len(lat) > 0 {
			r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
		}
		results = append(results, r)
	}
	// each runs f in n goroutines for every hostile principal, over and
	// over until the phase ends.
	each := func(n int, f func(ctx context.Context, token, user string) int) func(context.Context, func(int)) {
		return func(ctx context.Context, count func(int)) {
			var wg sync.WaitGroup
			for _, u := range hostile {
				for range n {
					wg.Go(func() {
						for ctx.Err() == nil {
							if code := f(ctx, u+"-token", u); code != 0 {
								count(code)
							}
						}
					})
				}
			}
			wg.Wait()
		}
	}
	get := func(path string) func(ctx context.Context, token, _ string) int {
		return func(ctx context.Context, token, _ string) int {
			code, _ := do(ctx, http.MethodGet, path, token, nil, 0)
			return code
		}
	}

	slowPosts := each(4, func(ctx context.Context, token, _ string) int {
		// 32 MiB announced, a few bytes a second.
		code, _ := do(ctx, http.MethodPost, "/v1/activities", token, &trickle{ctx: ctx}, 32<<20)
		return code
	})
	hugePosts := each(2, func(ctx context.Context, token, _ string) int {
		code, _ := do(ctx, http.MethodPost, "/v1/activities", token, bytes.NewReader(huge.Bytes()), int64(huge.Len()))
		return code
	})
	stuckTails := func(ctx context.Context, count func(int)) {
		var wg sync.WaitGroup
		for _, u := range hostile {
			for range 20 { // past the per-principal limit of 16
				wg.Go(func() {
					c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
					if err != nil {
						return
					}
					defer c.Close()
					fmt.Fprintf(c, "GET /v1/tail HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s-token\r\n\r\n", u)
					line, _ := bufio.NewReader(c).ReadString('\n')
					if f := strings.Fields(line); len(f) > 1 {
						code, _ := strconv.Atoi(f[1])
						count(code)
					}
					<-ctx.Done() // and never read again
				})
			}
		}
		// Meanwhile the admin stores activities for every one of them.
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				var b strings.Builder
				for _, u := range hostile {
					b.WriteString(bigLine(u, i))
				}
				do(ctx, http.MethodPost, "/v1/activities", "admin-token", strings.NewReader(b.String()), int64(b.Len()))
			}
		})
		wg.Wait()
	}
	bigPages := each(10, get("/v1/activities?limit=10000"))
	legacyPages := each(10, get("/activity/activities?limit=10000"))
	aggregates := each(4, func(ctx context.Context, token, _ string) int {
		for _, p := range []string{"/v1/count_by?field=type&limit=1000", "/v1/timeline?bucket=1m", "/v1/count", "/v1/export"} {
			if code, _ := do(ctx, http.MethodGet, p, token, nil, 0); code != http.StatusOK {
				return code
			}
		}
		return http.StatusOK
	})
	scrapes := each(2, func(ctx context.Context, _, _ string) int {
		code, _ := do(ctx, http.MethodGet, "/metrics", "", nil, 0)
		return code
	})

	phase("quiet")
	phase("slow uploads", slowPosts)
	phase("largest uploads", hugePosts)
	phase("stuck tails", stuckTails)
	phase("largest pages", bigPages)
	phase("largest legacy pages", legacyPages)
	phase("aggregates, exports", aggregates)
	phase("metrics scrapes", scrapes)
	phase("all at once", slowPosts, hugePosts, stuckTails, bigPages, legacyPages, aggregates, scrapes)

	t.Logf("%d hostile principals, %d activities of 60 KiB each stored by each, phases of %.1fs", len(hostile), *abuseActs, *abuseSeconds)
	t.Logf("%-22s %9s %9s %9s %6s  %s", "phase", "peak RSS", "carol p50", "carol p99", "fails", "answers to the hostile")
	for _, r := range results {
		t.Logf("%-22s %6d MB %7.1fms %7.1fms %6d  %v", r.phase, r.peakRSS>>20,
			float64(r.p50.Microseconds())/1000, float64(r.p99.Microseconds())/1000, r.legitFails, r.statuses)
	}
	for _, r := range results {
		require.Less(t, r.peakRSS, int64(serverMemoryBound), "phase %q", r.phase)
		require.Positive(t, r.peakRSS, "phase %q: no RSS read", r.phase)
		require.NotZero(t, r.p50, "phase %q: carol was never answered", r.phase)
	}
}

// trickle is a request body that sends a byte every 2 seconds until ctx
// ends.
type trickle struct{ ctx context.Context }

func (r *trickle) Read(p []byte) (int, error) {
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(2 * time.Second):
		p[0] = ' '
		return 1, nil
	}
}

// residentBytes returns the resident memory of process pid, from
// /proc/PID/status, or 0.
func residentBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
