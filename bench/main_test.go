package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSuiteSmoke runs every phase on a tiny data set and checks that the
// three systems agree on every query's answer sizes.
func TestSuiteSmoke(t *testing.T) {
	c := &config{n: 3000, ingestN: 1000, seed: 1, dir: t.TempDir(), runs: 20, budget: time.Second}
	res, err := run(context.Background(), c)
	require.NoError(t, err)
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
	}
	require.Equal(t, 50.0, res.Queries["Q1"][sysOurs].Results)
	require.NotNil(t, res.Compaction)
	require.Positive(t, res.Compaction.RatioJSON)
	require.Positive(t, res.OpenSeconds)
	var out bytes.Buffer
	res.print(&out)
	for _, want := range []string{"INGEST", "QUERIES", "COMPACTION", "TARGETS"} {
		require.True(t, strings.Contains(out.String(), want), want)
	}
}
