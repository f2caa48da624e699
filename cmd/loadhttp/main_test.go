package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadSmoke(t *testing.T) {
	s, err := activitystore.Open(filepath.Join(t.TempDir(), "store"), &activitystore.Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	srv := httptest.NewServer(httpapi.New(s, httpapi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--server", srv.URL, "--n", "500", "--batch", "120",
		"--import-clients", "3", "--clients", "4", "--requests", "20"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	assert.Empty(t, errOut.String())
	assert.Regexp(t, `^import: 500 activities in 5 POSTs of up to 120 lines, 3 clients, [\d.]+s: \d+ activities/s, [\d.]+ MB/s
query: 80 GET /v1/activities\?type=T&limit=50, 4 clients, [\d.]+s: \d+ requests/s
latency: p50 \S+  p90 \S+  p99 \S+  max \S+
$`, out.String())
	n, err := s.Query().Count(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 500, n)

	// The bench mix on what is there: every request answers 200.
	out.Reset()
	code = run(context.Background(), []string{"--server", srv.URL, "--n", "0", "--mix", "bench", "--clients", "2", "--requests", "60"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	assert.Regexp(t, `^query: 120 GETs of the bench mix, 2 clients`, out.String())
}

func TestLoadBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--n", "0"}, {"--mix", "other"}, {"--end", "yesterday"}, {"--batch", "0"}, {"--clients", "-1"}, {"--server", "localhost:8080"}, {"--requests", "x"}, {"extra"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		assert.NotEqual(t, 0, code, "%v", args)
		assert.NotEmpty(t, errOut.String(), "%v", args)
	}
	// An unreachable server is an error, not a hang.
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"--server", "http://127.0.0.1:1", "--n", "10"}, &out, &errOut)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut.String(), "loadhttp: ")
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	assert.Equal(t, time.Duration(50), percentile(d, 0.5))
	assert.Equal(t, time.Duration(90), percentile(d, 0.9))
	assert.Equal(t, time.Duration(99), percentile(d, 0.99))
	assert.Equal(t, time.Duration(1), percentile(d[:1], 0.99))
}
