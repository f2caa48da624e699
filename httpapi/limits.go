package httpapi

import (
	"fmt"
	"io"
	"net/http"
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
