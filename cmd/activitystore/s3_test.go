//go:build unix

package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/s3test"
	"github.com/stretchr/testify/require"
)

// TestServeTwoNodesAndReadOnly runs the set-up of the README: two serve
// writers, nodes 1 and 2, archive into one SeaweedFS bucket, and a third
// serve --read-only answers over both nodes' archives.
func TestServeTwoNodesAndReadOnly(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	archives := "s3://" + bucket + "/activity"
	endpoint := "http://" + srv.Endpoint
	writer := func(node int) string {
		base, _ := startServe(t, "--dir", t.TempDir(), "--archives", archives, "--s3-endpoint", endpoint,
			"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey, "--node", strconv.Itoa(node),
			"--segment-width", "1h", "--cold-after", "1h", "--compact-every", "100ms")
		waitHealthy(t, base)
		return base
	}
	w1, w2 := writer(1), writer(2)
	// The reader takes its credentials from the AWS variables.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_ENDPOINT_URL", endpoint)
	rd, _ := startServe(t, "--read-only", "--archives", archives, "--poll-every", "100ms")
	waitHealthy(t, rd)

	// Activities of three hours ago go to the bucket at the next compaction.
	end := time.Now().UTC().Add(-3 * time.Hour)
	var ids []string
	for i, base := range []string{w1, w2} {
		ids = append(ids, client{t, base, ""}.post(generate(150+50*i, 1, end))...)
	}
	count := func() int {
		var c struct{ Count int }
		require.NoError(t, json.Unmarshal(client{t, rd, ""}.get("/v1/count"), &c))
		return c.Count
	}
	deadline := time.Now().Add(60 * time.Second)
	for count() < len(ids) {
		require.True(t, time.Now().Before(deadline), "the reader sees %d of %d activities", count(), len(ids))
		time.Sleep(50 * time.Millisecond) // waits for the writers' compaction and the reader's poll
	}
	require.Equal(t, len(ids), count())

	// Newest first across both nodes, each ID once; a filter and its count.
	var page struct {
		Activities []activitystore.Activity `json:"activities"`
	}
	require.NoError(t, json.Unmarshal(client{t, rd, ""}.get("/v1/activities?limit=1000"), &page))
	var got []string
	nodes := map[int]int{}
	for i, a := range page.Activities {
		got = append(got, a.ID.String())
		nodes[a.ID.Node()]++
		if i > 0 {
			require.Negative(t, a.ID.Compare(page.Activities[i-1].ID), "newest first")
		}
	}
	sameSet(t, ids, got)
	require.Equal(t, map[int]int{1: 150, 2: 200}, nodes)
	typ := page.Activities[0].Type
	var byType struct {
		Activities []activitystore.Activity `json:"activities"`
	}
	require.NoError(t, json.Unmarshal(client{t, rd, ""}.get("/v1/activities?limit=1000&type="+url.QueryEscape(typ)), &byType))
	want := slices.DeleteFunc(slices.Clone(page.Activities), func(a activitystore.Activity) bool { return a.Type != typ })
	require.Equal(t, len(want), len(byType.Activities))
	for i := range want {
		require.Equal(t, want[i].ID, byType.Activities[i].ID)
	}
	one := page.Activities[len(page.Activities)/2]
	require.Contains(t, string(client{t, rd, ""}.get("/v1/activities/"+one.ID.String())), one.ID.String())

	// The reader takes no writes.
	req, err := http.NewRequest(http.MethodPost, rd+"/v1/activities", strings.NewReader(`{"type":"x"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	code, body := client{t, rd, ""}.do(req)
	require.Equal(t, http.StatusMethodNotAllowed, code, "%s", body)
	require.Contains(t, string(body), "read-only")
}

// TestCommandsOnABucket: import, compact, query, stats and verify work on a
// store whose archives are in a bucket, given --archives (here from
// ACTIVITYSTORE_ARCHIVES); without it the store refuses to open.
func TestCommandsOnABucket(t *testing.T) {
	srv := s3test.Start(t)
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_ENDPOINT_URL", "http://"+srv.Endpoint)
	t.Setenv("ACTIVITYSTORE_ARCHIVES", "s3://"+srv.Bucket(t)+"/cli")
	var lines strings.Builder
	for _, a := range generate(200, 3, time.Now().UTC().Add(-10*24*time.Hour)) {
		b, err := json.Marshal(a)
		require.NoError(t, err)
		lines.Write(append(b, '\n'))
	}
	r := runCmd(t, lines.String(), "import", "--dir", dir)
	require.Zero(t, r.code, r.stderr)
	r = runCmd(t, "", "compact", "--dir", dir, "--cold-after", "1d")
	require.Zero(t, r.code, r.stderr)
	require.Contains(t, r.stdout, "archived activities: 0 -> 200 of 200")
	r = runCmd(t, "", "stats", "--dir", dir, "--output", "json")
	require.Zero(t, r.code, r.stderr)
	var st struct {
		Activities         int `json:"activities"`
		ArchivedActivities int `json:"archived_activities"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Equal(t, 200, st.Activities)
	require.Equal(t, 200, st.ArchivedActivities)
	r = runCmd(t, "", "verify", "--dir", dir)
	require.Zero(t, r.code, r.stderr)
	r = runCmd(t, "", "query", "--dir", dir, "--limit", "500", "--output", "json")
	require.Zero(t, r.code, r.stderr)
	require.Equal(t, 200, strings.Count(r.stdout, `"id"`))

	t.Setenv("ACTIVITYSTORE_ARCHIVES", "")
	r = runCmd(t, "", "verify", "--dir", dir)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "archives are in s3://")
}
