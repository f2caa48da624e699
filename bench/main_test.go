package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/activitystore/activitystore/internal/s3test"
	"github.com/stretchr/testify/require"
)

// TestMain runs the children of the reopen phase, which run this binary.
func TestMain(m *testing.M) {
	flag.Parse()
	if runChild() {
		os.Exit(0)
	}
	if err := s3test.Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestSuiteSmoke runs every phase on a tiny data set and checks that the
// three systems agree on every query's answer sizes.
func TestSuiteSmoke(t *testing.T) {
	c := &config{n: 3000, ingestN: 1000, seed: 1, dir: t.TempDir(), runs: 20, budget: time.Second, settle: time.Second}
	c.jsonPath = filepath.Join(t.TempDir(), "partial.json") // c.dir goes at the end
	res, err := run(context.Background(), c)
	require.NoError(t, err)
	// The file saved after the last phase holds every phase's figures.
	b, err := os.ReadFile(c.jsonPath)
	require.NoError(t, err)
	var saved results
	require.NoError(t, json.Unmarshal(b, &saved))
	require.False(t, saved.Complete)
	require.Equal(t, res.Archived, saved.Archived)
	require.Equal(t, res.Queries, saved.Queries)
	require.Len(t, res.Ingest, 12) // 4 modes x 3 systems
	for _, i := range res.Ingest {
		require.Positive(t, i.PerSecond, "%+v", i)
	}
	for _, q := range queries {
		m := res.Queries[q.id]
		require.Len(t, m, 3, q.id)
		ours := m[sysOurs]
		require.Equal(t, c.runs, ours.Runs, q.id)
		for _, name := range systemNames {
			require.Equal(t, ours.Results, m[name].Results, "%s: %s answers differently", q.id, name)
		}
		require.Equal(t, ours.Results, res.Archived[q.id].Results, "%s on archives", q.id)
		require.Positive(t, res.Archived[q.id].First, "%s: first archived run", q.id)
	}
	require.Equal(t, 50.0, res.Queries["Q1"][sysOurs].Results)
	require.NotNil(t, res.Compaction)
	require.Positive(t, res.Compaction.RatioJSON)
	require.Positive(t, res.OpenSeconds)
	require.Len(t, res.Reopen, 3)
	for _, r := range res.Reopen {
		require.Empty(t, r.Err, r.Case)
		require.Positive(t, r.FirstMS, r.Case)
		require.Positive(t, r.PeakRSSMB, r.Case)
	}
	require.Zero(t, res.Reopen[0].RebuiltActs, "a clean close leaves nothing to rebuild")
	require.Positive(t, res.Reopen[2].RebuiltActs, "the kill leaves the newest window to rebuild")
	var out bytes.Buffer
	res.print(&out)
	for _, want := range []string{"INGEST", "QUERIES", "REOPEN", "COMPACTION", "first run (cold)", "on archives: p50", "TARGETS"} {
		require.True(t, strings.Contains(out.String(), want), want)
	}
}

// TestSuiteOnly runs the load and one phase, and checks the JSON form.
func TestSuiteOnly(t *testing.T) {
	c := &config{n: 2000, ingestN: 1000, seed: 2, dir: t.TempDir(), runs: 5, budget: time.Second, only: map[string]bool{"query": true}}
	res, err := run(context.Background(), c)
	require.NoError(t, err)
	require.Len(t, res.Ingest, 3) // the load only
	require.Len(t, res.Queries, len(queries))
	require.Nil(t, res.Compaction)
	require.Zero(t, res.OpenSeconds)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	for _, k := range []string{"ingest", "queries", "disk_bytes_per_activity", "index_bytes_per_activity", "peak_rss_mb"} {
		require.Contains(t, back, k)
	}
}

// TestSuiteAlone runs the store without comparators: only its own targets
// are judged.
func TestSuiteAlone(t *testing.T) {
	c := &config{n: 2000, ingestN: 1000, seed: 1, dir: t.TempDir(), runs: 5, budget: time.Second,
		systems: []string{sysOurs}, only: map[string]bool{"query": true}, settle: time.Second}
	res, err := run(context.Background(), c)
	require.NoError(t, err)
	require.Len(t, res.Ingest, 1)
	require.Len(t, res.Queries["Q1"], 1)
	require.Positive(t, res.SettleSeconds)
	for _, tg := range res.targets() {
		require.NotContains(t, tg.What, "SQLite")
		require.NotContains(t, tg.What, "pebble")
	}
}

// TestSuiteS3 runs the compaction phase with local archives and with the
// archives in a bucket of a SeaweedFS server the bench starts, and checks
// that both, and a reader over the bucket, answer as the hot store does.
func TestSuiteS3(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a SeaweedFS server")
	}
	archives, err := parseArchives("s3,local")
	require.NoError(t, err)
	require.Equal(t, []string{locLocal, locS3}, archives)
	_, err = parseArchives("local,gcs")
	require.Error(t, err)

	c := &config{n: 5000, ingestN: 1000, seed: 3, dir: t.TempDir(), runs: 10, budget: time.Second, settle: time.Second,
		systems: []string{sysOurs}, only: map[string]bool{"query": true, "compact": true}, archives: archives}
	c.jsonPath = filepath.Join(t.TempDir(), "s3.json")
	res, err := run(context.Background(), c)
	require.NoError(t, err)
	require.NotNil(t, res.Compaction)
	require.NotNil(t, res.S3)
	s3 := res.S3
	require.NotNil(t, s3.Compaction)
	require.Equal(t, res.Compaction.ArchiveBytes, s3.Compaction.ArchiveBytes, "the same archives, elsewhere")
	require.Positive(t, s3.Compaction.MBPerSec)
	require.Positive(t, s3.CompactionRequests.ByMethod["PUT"])
	require.GreaterOrEqual(t, s3.CompactionRequests.SentBytes, s3.Compaction.ArchiveBytes)
	require.Positive(t, s3.ReaderOpenSeconds)
	for _, q := range queries {
		hot := res.Queries[q.id][sysOurs]
		for where, m := range map[string]map[string]latency{"local": res.Archived, "s3": s3.Archived, "s3 reader": s3.Reader} {
			require.Equal(t, c.runs, m[q.id].Runs, "%s on %s", q.id, where)
			require.Equal(t, hot.Results, m[q.id].Results, "%s on %s answers differently", q.id, where)
		}
	}
	b, err := os.ReadFile(c.jsonPath)
	require.NoError(t, err)
	var saved results
	require.NoError(t, json.Unmarshal(b, &saved))
	require.Equal(t, s3.Reader, saved.S3.Reader)
	var out bytes.Buffer
	res.print(&out)
	for _, want := range []string{"COMPACTION, every window cold", "MB/s uploaded", "s3 reader cold", "OpenReader in"} {
		require.Contains(t, out.String(), want)
	}
	t.Log("\n" + out.String())
}

// TestCLIQueryError runs the command line's query on a store it cannot
// open: the row names the command's own error, which the bench captures
// instead of passing it through.
func TestCLIQueryError(t *testing.T) {
	c := &config{n: 1000, ingestN: 1000, seed: 1, dir: t.TempDir()}
	d, err := generate(c)
	require.NoError(t, err)
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, []byte("not a store"), 0o644))
	r := cliQuery(c, d, notDir)
	require.NotEmpty(t, r.Err)
	require.Contains(t, r.Err, notDir, "the command's own message")
}
