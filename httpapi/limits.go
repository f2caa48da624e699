package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// bodyChunk and bodyChunkTimeout set the pace a POST body must keep: each
// bodyChunk bytes, and the first byte, must arrive within bodyChunkTimeout
// of the previous ones, or the request ends with a 408 and frees its slot.
const (
	bodyChunk        = 64 << 10
	bodyChunkTimeout = 10 * time.Second
)

// retryAfter is the Retry-After, in seconds, of a 429.
const retryAfter = 1

// limiter bounds how many requests of one kind each principal has in flight.
type limiter struct {
	kind string // for the error text: "POSTs", "tails", ...
	per  int
	mu   sync.Mutex
	held map[string]int
}

func newLimiter(kind string, per int) *limiter {
	return &limiter{kind: kind, per: per, held: map[string]int{}}
}

// acquire takes a place for key, or returns a 429 when key holds them all;
// release gives it back. With an empty key (no authentication: one
// principal) it takes none.
func (l *limiter) acquire(key string) (release func(), err error) {
	if key == "" {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] >= l.per {
		return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: retryAfter,
			msg: fmt.Sprintf("too many %s at once: a principal may have %d in flight; retry when one ends", l.kind, l.per)}
	}
	l.held[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[key]--; l.held[key] <= 0 {
			delete(l.held, key)
		}
	}, nil
}

// gate bounds how many requests of one kind all principals have in flight
// together. A request waits up to wait for a place, then is a 503 with
// Retry-After. A place given back goes to the waiting request whose
// principal has the fewest requests in (held and waiting), and among those
// to the principal served longest ago, so that principals that keep many
// requests going cannot keep the others waiting: a principal with one
// request waits for at most one place per other principal with as few.
type gate struct {
	kind    string
	n       int
	wait    time.Duration
	mu      sync.Mutex
	used    int
	held    map[string]int    // places held, per principal holding some
	waiting map[string]int    // requests waiting, per principal
	served  map[string]uint64 // when each principal holding or waiting was last given a place
	tick    uint64
	waiters []*gateWaiter // in arrival order
}

type gateWaiter struct {
	key   string
	ready chan struct{} // closed when the waiter has its place
}

func newGate(kind string, n int, wait time.Duration) *gate {
	return &gate{kind: kind, n: n, wait: wait, held: map[string]int{}, waiting: map[string]int{}, served: map[string]uint64{}}
}

// grant gives key a place; the caller holds g.mu.
func (g *gate) grant(key string) {
	g.held[key]++
	g.tick++
	g.served[key] = g.tick
}

// forget drops what g remembers of key once it neither holds nor waits;
// the caller holds g.mu.
func (g *gate) forget(key string) {
	if g.held[key] <= 0 && g.waiting[key] <= 0 {
		delete(g.held, key)
		delete(g.waiting, key)
		delete(g.served, key)
	}
}

// acquire takes a place for key, waiting up to g.wait while ctx lives;
// release gives it back.
func (g *gate) acquire(ctx context.Context, key string) (release func(), err error) {
	release = func() { g.release(key) }
	g.mu.Lock()
	if g.used < g.n && len(g.waiters) == 0 {
		g.used++
		g.grant(key)
		g.mu.Unlock()
		return release, nil
	}
	busy := &apiError{status: http.StatusServiceUnavailable, retryAfter: retryAfter,
		msg: fmt.Sprintf("the server is busy: it serves %d %s at once; retry shortly", g.n, g.kind)}
	if g.wait <= 0 {
		g.mu.Unlock()
		return nil, busy
	}
	w := &gateWaiter{key: key, ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.waiting[key]++
	if _, ok := g.served[key]; !ok && g.tick > 0 {
		// A principal the gate does not remember queues as if served
		// just before the last grant: behind those waiting longer, so
		// that leaving and coming back does not jump the queue.
		g.served[key] = g.tick - 1
	}
	g.mu.Unlock()
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return release, nil
	case <-t.C:
	case <-ctx.Done():
		busy.err = ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := slices.Index(g.waiters, w); k >= 0 {
		g.waiters = slices.Delete(g.waiters, k, k+1)
		g.waiting[key]--
		g.forget(key)
		return nil, busy
	}
	return release, nil // given a place as it gave up: keep it
}

func (g *gate) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held[key]--
	g.forget(key)
	if len(g.waiters) == 0 {
		g.used--
		return
	}
	next := 0
	for k, w := range g.waiters {
		a, b := w.key, g.waiters[next].key
		la, lb := g.held[a]+g.waiting[a], g.held[b]+g.waiting[b]
		if la < lb || (la == lb && g.served[a] < g.served[b]) {
			next = k
		}
	}
	w := g.waiters[next]
	g.waiters = slices.Delete(g.waiters, next, next+1)
	g.waiting[w.key]--
	g.grant(w.key)
	close(w.ready)
}

// principalKey names who's limits a request counts against: the principal
// when the handler authenticates, else nobody ("").
func (h *handler) principalKey(who Principal) string {
	if h.auth == nil {
		return ""
	}
	if who.Admin {
		return "admin\x00" + who.UserID
	}
	return "user\x00" + who.UserID
}

// pacedBody reads a request body, moving the connection's read deadline on
// by timeout at the start and after each chunk bytes, so that a sender
// that stalls loses its request, whatever the body's size.
type pacedBody struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	chunk   int
	since   int // bytes read since the deadline last moved
	armed   bool
}

func (p *pacedBody) Read(b []byte) (int, error) {
	if !p.armed || p.since >= p.chunk {
		// Not every connection can take a deadline (an HTTP/2 stream of
		// an old server, a test recorder): then the server's ReadTimeout
		// alone bounds the body.
		_ = p.rc.SetReadDeadline(time.Now().Add(p.timeout))
		p.armed, p.since = true, 0
	}
	n, err := p.r.Read(b)
	p.since += n
	return n, err
}
