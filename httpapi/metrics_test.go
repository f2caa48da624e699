package httpapi

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetrics(t *testing.T) {
	s, c := setup(t)
	ids := c.postIDs(`[{"type":"a"},{"type":"b"}]`, "application/json")
	c.post(`{"type":""}`, "application/json")
	c.get("/v1/activities/"+ids[0], http.StatusOK, nil)
	c.get("/v1/activities", http.StatusOK, nil)
	c.errorOf("/nothing", http.StatusNotFound, "")

	status, body := c.as("").do(http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, status)
	text := string(body)
	for _, want := range []string{
		"activitystore_http_appended_activities_total 2\n",
		`activitystore_http_append_rejected_requests_total{code="400"} 1` + "\n",
		`activitystore_http_request_duration_seconds_bucket{code="200",route="GET /v1/activities/{id}",le="+Inf"} 1` + "\n",
		`activitystore_http_request_duration_seconds_count{code="200",route="GET /v1/activities"} 1` + "\n",
		`activitystore_http_request_duration_seconds_count{code="201",route="POST /v1/activities"} 1` + "\n",
		`activitystore_http_request_duration_seconds_count{code="404",route="unmatched"} 1` + "\n",
		"activitystore_up 1\n",
		"activitystore_activities 2\n",
		"activitystore_archived_activities 0\n",
		"activitystore_segments 1\n",
		"activitystore_sealed_segments 0\n",
		"activitystore_archives 0\n",
		`activitystore_disk_bytes{tier="archive"} 0` + "\n",
		`activitystore_disk_bytes{tier="pebble"} `,
		"activitystore_cache_bytes ",
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, ids[0], "routes are labeled by pattern, not path")

	// A second handler on the same store has metrics of its own.
	c2 := serve(t, s, Options{})
	_, body = c2.do(http.MethodGet, "/metrics", "")
	assert.NotContains(t, string(body), "activitystore_http_appended_activities_total 2\n")
	assert.Contains(t, string(body), "activitystore_activities 2\n")
}

// Streams are timed in a histogram of their own, not as request latencies.
func TestStreamMetrics(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0))
	status, _ := c.do(http.MethodGet, "/v1/export", "")
	require.Equal(t, http.StatusOK, status)
	c.errorOf("/v1/export?limit=1", http.StatusBadRequest, "limit")
	tail := c.tailStream("/v1/tail?limit=1")
	seed(t, s, act("a", "u-1", 1))
	tail.activity()
	_, err := tail.next()
	require.ErrorIs(t, err, io.EOF) // the handler has returned, and been timed

	_, body := c.do(http.MethodGet, "/metrics", "")
	text := string(body)
	for _, want := range []string{
		`activitystore_http_stream_duration_seconds_count{route="GET /v1/export"} 1` + "\n",
		`activitystore_http_stream_duration_seconds_count{route="GET /v1/tail"} 1` + "\n",
		`activitystore_http_stream_duration_seconds_bucket{route="GET /v1/tail",le="3600"} 1` + "\n",
		`activitystore_http_request_duration_seconds_count{code="400",route="GET /v1/export"} 1` + "\n",
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, `activitystore_http_request_duration_seconds_count{code="200",route="GET /v1/export"}`)
	assert.NotContains(t, text, `activitystore_http_request_duration_seconds_count{code="200",route="GET /v1/tail"}`)
}
