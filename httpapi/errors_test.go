package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnknownRoute(t *testing.T) {
	_, c := setup(t)
	for _, path := range []string{"/", "/v1", "/v1/activity", "/v2/activities", "/v1/count/x"} {
		c.errorOf(path, http.StatusNotFound, "")
	}
	// Unknown routes need no token to be told apart.
	c.as("").errorOf("/nothing", http.StatusNotFound, "")
}

func TestWrongMethod(t *testing.T) {
	_, c := setup(t)
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, "/v1/count", "GET, HEAD"},
		{http.MethodDelete, "/v1/activities", "GET, HEAD, POST"},
		{http.MethodPut, "/v1/activities/x", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
	} {
		resp := c.send(t.Context(), tc.method, tc.path, "{}")
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", tc.method, tc.path)
		require.Equal(t, tc.allow, resp.Header.Get("Allow"), "%s %s", tc.method, tc.path)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	}
}

func TestBadParameters(t *testing.T) {
	_, c := setup(t)
	cases := []struct{ path, field string }{
		{"/v1/activities?tpye=a", "tpye"},
		{"/v1/activities?type=a&limt=5", "limt"},
		{"/v1/activities?limit=5&limit=6", "limit"},
		{"/v1/activities?since=a&since=b", "since"},
		{"/v1/activities?limit=x", "limit"},
		{"/v1/activities?limit=0", "limit"},
		{"/v1/activities?limit=10001", "limit"},
		{"/v1/activities?skip=-1", "skip"},
		{"/v1/activities?since=2025-01-02", "since"},
		{"/v1/activities?until=2025-01-02T00:00:00+01:00", "until"}, // "+" unescaped is a space
		{"/v1/activities?cursor=AAAA", "cursor"},
		{"/v1/count?cursor=x", "cursor"},
		{"/v1/count_by?field=type&bucket=1h", "bucket"},
		{"/v1/timeline?field=type", "field"},
		{"/v1/export?limit=5", "limit"},
		{"/v1/tail?limit=0", "limit"},
		{"/v1/tail?limit=-1", "limit"},
		{"/v1/tail?skip=1", "skip"},
		{"/v1/tail?from=", "from"},
		{"/v1/tail?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", "until"},
		{"/healthz?verbose=1", "verbose"},
	}
	for _, tc := range cases {
		e := c.errorOf(tc.path, http.StatusBadRequest, tc.field)
		assert.Contains(t, e.Error, tc.field, tc.path)
	}
	e := c.errorOf("/v1/activities?until=2025-01-02T00:00:00+01:00", http.StatusBadRequest, "until")
	assert.Contains(t, e.Error, "%2B")
	status, body := c.do(http.MethodGet, "/v1/activities?a=%zz", "")
	requireError(t, status, body, http.StatusBadRequest, "")
}

func TestStoreClosed(t *testing.T) {
	s, c := setup(t)
	ids := seed(t, s, act("a", "u-1", 0))
	require.NoError(t, s.Close())

	for _, path := range []string{"/activity/activities/", "/v1/activities", "/v1/activities/" + ids[0],
		"/v1/count", "/v1/count_by?field=type", "/v1/timeline", "/v1/timeline?since=2025-01-01T00:00:00Z&until=2025-01-02T00:00:00Z",
		"/v1/export", "/v1/tail", "/healthz"} {
		e := c.errorOf(path, http.StatusServiceUnavailable, "")
		assert.Contains(t, e.Error, "closed", path)
	}
	status, body := c.post(`{"type":"a"}`, "application/json")
	requireError(t, status, body, http.StatusServiceUnavailable, "")

	// Metrics still answer, and say the store is down.
	status, body = c.do(http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(body), "activitystore_up 0\n")
	assert.NotContains(t, string(body), "activitystore_activities ")
}

func TestErrorBodyIsJSON(t *testing.T) {
	_, c := setup(t)
	resp := c.send(t.Context(), http.MethodGet, "/v1/activities?bad=1", "")
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.JSONEq(t, `{"error":"unknown parameter \"bad\": /v1/activities takes type, user, module, action, resource, since, until, limit, skip, cursor","field":"bad"}`, string(body))
}

// TestErrorsDoNotEchoHugeInput checks that an error answer quotes at most a
// short head of what the request sent, whatever its size.
func TestErrorsDoNotEchoHugeInput(t *testing.T) {
	_, c := setup(t)
	huge := strings.Repeat("x", 100_000)
	for _, path := range []string{
		"/v1/activities?cursor=" + huge,
		"/v1/activities?limit=" + huge,
		"/v1/activities?since=" + huge,
		"/v1/activities?" + huge + "=1",
		"/v1/count_by?field=" + huge,
		"/v1/timeline?bucket=" + huge,
		"/v1/activities/" + huge,
	} {
		status, body := c.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusBadRequest, status, "%.80s", path)
		require.Less(t, len(body), 600, "%.80s: %.200s", path, body)
	}
	status, body := c.as(aliceToken).do(http.MethodGet, "/v1/activities?user="+huge, "")
	require.Equal(t, http.StatusForbidden, status)
	require.Less(t, len(body), 600, "%.200s", body)
	status, body = c.post(`{"type":"a","time":"`+huge+`"}`, "application/json")
	require.Equal(t, http.StatusBadRequest, status)
	require.Less(t, len(body), 600, "%.200s", body)
}

func TestErrorTextBound(t *testing.T) {
	e := &apiError{msg: strings.Repeat("é", 5000), field: strings.Repeat("f", 500)}
	b := e.body()
	require.LessOrEqual(t, len(b.Error), maxErrorBytes)
	require.True(t, utf8.ValidString(b.Error))
	require.LessOrEqual(t, len(b.Field), 64+len("…"))
}
