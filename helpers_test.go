package activitystore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var testBase = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// openTest opens a store in a temporary directory with a fixed clock and
// no background sealing, closing it when the test ends.
func openTest(t testing.TB, o *Options) (*Store, string, *testClock) {
	t.Helper()
	dir := t.TempDir()
	clock := &testClock{t: testBase.Add(48 * time.Hour)}
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.SealEvery == 0 {
		opts.SealEvery = time.Hour
	}
	s, err := Open(dir, &opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, dir, clock
}

func act(typ, user string, at time.Time) Activity {
	return Activity{
		Type: typ, UserID: user, Module: "auth", Action: "login", Time: at,
		Details: json.RawMessage(fmt.Sprintf(`{"n":%d}`, at.UnixNano()%1000)),
	}
}

func mustAppend(t testing.TB, s *Store, acts ...Activity) []ID {
	t.Helper()
	ids, err := s.Append(context.Background(), acts...)
	require.NoError(t, err)
	return ids
}
