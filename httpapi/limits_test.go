package httpapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiter(t *testing.T) {
	l := newLimiter("reads", 2)
	r1, err := l.acquire("alice")
	require.NoError(t, err)
	r2, err := l.acquire("alice")
	require.NoError(t, err)
	_, err = l.acquire("alice")
	var ae *apiError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusTooManyRequests, ae.status)
	require.Equal(t, retryAfter, ae.retryAfter)
	require.Contains(t, ae.msg, "too many reads")

	rb, err := l.acquire("bob")
	require.NoError(t, err, "another principal has places of its own")
	r1()
	r3, err := l.acquire("alice")
	require.NoError(t, err, "a release gives a place back")
	for _, release := range []func(){r2, r3, rb} {
		release()
	}
	require.Empty(t, l.held, "nothing left behind")

	for range 100 { // no authentication: one principal, no limit
		_, err := l.acquire("")
		require.NoError(t, err)
	}
}

func TestGate(t *testing.T) {
	g := newGate("reads", 2, 0)
	r1, err := g.acquire(t.Context(), "alice")
	require.NoError(t, err)
	r2, err := g.acquire(t.Context(), "alice")
	require.NoError(t, err)
	_, err = g.acquire(t.Context(), "alice")
	var ae *apiError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusServiceUnavailable, ae.status)
	require.Equal(t, retryAfter, ae.retryAfter)
	require.Contains(t, ae.msg, "serves 2 reads at once")

	// With a wait: a place given back meanwhile is taken.
	g.wait = time.Minute
	got := make(chan error, 1)
	go func() {
		r, err := g.acquire(t.Context(), "alice")
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	require.NoError(t, <-got)

	// The wait ends with the request, or after g.wait.
	r1, err = g.acquire(t.Context(), "alice")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = g.acquire(ctx, "alice")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusServiceUnavailable, ae.status)
	require.ErrorIs(t, ae.err, context.Canceled)
	g.wait = time.Millisecond
	_, err = g.acquire(t.Context(), "alice")
	require.ErrorAs(t, err, &ae)
	r1()
	r2()
	require.Zero(t, g.used)
	require.Empty(t, g.held)
}

// TestGateFair checks that a place given back goes to the waiting
// principal that holds the fewest, not to the one that asked first.
func TestGateFair(t *testing.T) {
	g := newGate("reads", 2, time.Minute)
	h1, err := g.acquire(t.Context(), "hostile")
	require.NoError(t, err)
	h2, err := g.acquire(t.Context(), "hostile")
	require.NoError(t, err)
	got := make(chan string, 2)
	wait := func(key string) {
		r, err := g.acquire(t.Context(), key)
		if err == nil {
			got <- key
			r()
		}
	}
	go wait("hostile")
	requireWaiters(t, g, 1)
	go wait("carol")
	requireWaiters(t, g, 2)
	h1()
	require.Equal(t, "carol", <-got, "carol holds none: she goes first")
	require.Equal(t, "hostile", <-got)
	h2()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.used == 0 }, 5*time.Second, time.Millisecond)
	require.Empty(t, g.held)
	require.Empty(t, g.waiting)
	require.Empty(t, g.served)
}

// grant is a place a queued request got.
type grant struct {
	key     string
	release func()
}

// queueOn starts a request of key on g, whose place goes to got, and
// waits until g has waiting requests waiting.
func queueOn(t *testing.T, g *gate, got chan<- grant, key string, waiting int) {
	t.Helper()
	go func() {
		if r, err := g.acquire(t.Context(), key); err == nil {
			got <- grant{key, r}
		}
	}()
	requireWaiters(t, g, waiting)
}

// requireWaiters waits until g has n requests waiting.
func requireWaiters(t *testing.T, g *gate, n int) {
	t.Helper()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiters) == n }, 5*time.Second, time.Millisecond)
}

// TestGateRoundRobin checks that among principals that hold as many
// places, the one served longest ago goes first, whatever the order of
// arrival.
func TestGateRoundRobin(t *testing.T) {
	g := newGate("reads", 1, time.Minute)
	hold, err := g.acquire(t.Context(), "a")
	require.NoError(t, err)
	got := make(chan grant, 2)
	queueOn(t, g, got, "a", 1) // a asks first
	queueOn(t, g, got, "b", 2)
	hold()
	first := <-got
	require.Equal(t, "b", first.key, "a was served last: b goes first")
	first.release()
	second := <-got
	require.Equal(t, "a", second.key)
	second.release()
	require.Zero(t, g.used)
	require.Empty(t, g.served)
}

// TestGateNoJumping checks that principals that come and go do not keep
// passing one that waits: with one place, X holds it and asks for another
// while Y and Z take turns, each asking again as soon as it has left; X
// gets its place within a turn of each.
func TestGateNoJumping(t *testing.T) {
	g := newGate("reads", 1, time.Minute)
	holdX, err := g.acquire(t.Context(), "x")
	require.NoError(t, err)
	got := make(chan grant, 4)
	queue := func(key string, waiting int) { queueOn(t, g, got, key, waiting) }
	queue("x", 1)
	queue("y", 2)
	queue("z", 3)
	cur, curKey := holdX, "x"
	for turn := range 6 {
		cur()
		w := <-got
		if w.key == "x" {
			require.LessOrEqual(t, turn, 2, "x waited past a turn of each other principal")
			w.release()
			return
		}
		if curKey != "x" {
			queue(curKey, 2) // the one that just left asks again
		}
		cur, curKey = w.release, w.key
	}
	t.Fatal("x never got its place")
}
