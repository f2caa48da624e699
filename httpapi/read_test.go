package httpapi

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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLegacyActivities(t *testing.T) {
	s, c := setup(t)

	var empty []map[string]any
	c.get("/activity/activities/", http.StatusOK, &empty)
	require.NotNil(t, empty, "an empty store is an empty array, not null")
	require.Empty(t, empty)

	acts := make([]activitystore.Activity, 60)
	for i := range acts {
		acts[i] = act("model.deploy", "u-1", i)
	}
	ids := seed(t, s, acts...)
	newest := reversed(ids)

	for _, path := range []string{"/activity/activities/", "/activity/activities"} {
		var got []map[string]any
		c.get(path, http.StatusOK, &got)
		require.Len(t, got, 50, "the default limit is 50")
		for i, item := range got {
			assert.Equal(t, newest[i], item["id"])
		}
		for _, key := range []string{"id", "user_id", "module", "apicall", "action", "created_at", "type", "timestamp", "details"} {
			assert.Contains(t, got[0], key)
		}
		assert.Equal(t, "u-1", got[0]["user_id"])
		assert.Equal(t, "POST /api/serving/deploy", got[0]["apicall"])
		assert.Equal(t, base.Add(59*time.Minute).Format(time.RFC3339), got[0]["created_at"])
		assert.Equal(t, map[string]any{"replicas": float64(2)}, got[0]["details"])
	}

	var page []activitystore.Activity
	c.get("/activity/activities/?limit=5&skip=2", http.StatusOK, &page)
	require.Equal(t, newest[2:7], idsOf(page))

	c.get("/activity/activities/?limit=50&skip=55", http.StatusOK, &page)
	require.Equal(t, newest[55:], idsOf(page))

	c.errorOf("/activity/activities/?limit=0", http.StatusBadRequest, "limit")
	c.errorOf("/activity/activities/?skip=-1", http.StatusBadRequest, "skip")
	c.errorOf("/activity/activities/?limit=10001", http.StatusBadRequest, "limit")
	c.errorOf("/activity/activities/?limit=5&limit=6", http.StatusBadRequest, "limit")

	// Other parameters, which the platform's clients may send, are ignored,
	// filters included: they do not select anything.
	c.get("/activity/activities/?limit=5&type=x&user=nobody&page=3&_=1736000000&format=json", http.StatusOK, &page)
	require.Equal(t, newest[:5], idsOf(page))
	c.errorOf("/activity/activities/?limit=0&page=3", http.StatusBadRequest, "limit")
	var mine []activitystore.Activity
	c.as(aliceToken).get("/activity/activities/?user=u-1", http.StatusOK, &mine)
	require.Empty(t, mine, "an ignored user parameter does not widen a non-admin's scope")
	c.errorOf("/activity/activities/extra", http.StatusNotFound, "")
}

// listPage is the answer of GET /v1/activities.
type listPage struct {
	Activities []activitystore.Activity `json:"activities"`
	NextCursor *string                  `json:"next_cursor"`
}

func TestListFilters(t *testing.T) {
	s, c := setup(t)
	a := act("user.login", "u-1", 0)
	a.Module, a.Action, a.Resource = "auth", "login", ""
	b := act("model.deploy", "u-2", 1)
	b.Resource = "model/8"
	d := act("model.undeploy", "u-1", 2)
	d.Action = "undeploy"
	sys := act("system.backup", "", 3)
	sys.Module, sys.Action, sys.Resource = "ops", "backup", "db/main"
	ids := seed(t, s, a, b, d, sys)

	list := func(query string) []string {
		t.Helper()
		var p listPage
		c.get("/v1/activities?"+query, http.StatusOK, &p)
		require.NotNil(t, p.NextCursor, "next_cursor is always present")
		require.NotNil(t, p.Activities)
		return idsOf(p.Activities)
	}
	at := func(i ...int) []string {
		out := []string{}
		for _, j := range i {
			out = append(out, ids[j])
		}
		return out
	}
	assert.Equal(t, at(3, 2, 1, 0), list(""))
	assert.Equal(t, at(1), list("type=model.deploy"))
	assert.Equal(t, at(2, 1), list("type=model.deploy&type=model.undeploy"), "values of one filter are ORed")
	assert.Equal(t, at(2, 0), list("user=u-1"))
	assert.Equal(t, at(3), list("user="), "an empty user selects system events")
	assert.Equal(t, at(3), list("module=ops"))
	assert.Equal(t, at(2), list("action=undeploy"))
	assert.Equal(t, at(1), list("resource=model/8"))
	assert.Equal(t, at(2), list("user=u-1&module=models"), "different filters are ANDed")
	assert.Equal(t, at(3, 2), list("since="+url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339))))
	assert.Equal(t, at(1, 0), list("until="+url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339))))
	assert.Equal(t, at(2, 1), list("since="+url.QueryEscape(base.Add(time.Minute).Format(time.RFC3339))+
		"&until="+url.QueryEscape(base.Add(3*time.Minute).In(time.FixedZone("", 3600)).Format(time.RFC3339))))
	assert.Equal(t, at(2), list("limit=1&skip=1"))
	assert.Equal(t, []string{}, list("type=nothing"))
}

func TestCursorWalk(t *testing.T) {
	s, c := setup(t)
	acts := make([]activitystore.Activity, 25)
	for i := range acts {
		acts[i] = act("model.deploy", "u-1", i/3) // ties in time, told apart by ID
	}
	want := reversed(seed(t, s, acts...))

	var got []string
	path := "/v1/activities?limit=7"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "the walk does not end")
		var p listPage
		c.get(path, http.StatusOK, &p)
		got = append(got, idsOf(p.Activities)...)
		require.NotNil(t, p.NextCursor)
		if *p.NextCursor == "" {
			break
		}
		path = "/v1/activities?limit=7&cursor=" + url.QueryEscape(*p.NextCursor)
	}
	require.Equal(t, want, got, "every activity exactly once, newest first")

	// The last page holds the last match: its next_cursor is empty.
	var p listPage
	c.get("/v1/activities?limit=25", http.StatusOK, &p)
	require.Len(t, p.Activities, 25)
	require.Equal(t, "", *p.NextCursor)

	c.errorOf("/v1/activities?cursor=nonsense", http.StatusBadRequest, "cursor")
	c.errorOf("/v1/activities?cursor=", http.StatusBadRequest, "cursor")
}

func TestGetActivity(t *testing.T) {
	s, c := setup(t)
	ids := seed(t, s, act("model.deploy", "u-1", 5))

	var got activitystore.Activity
	c.get("/v1/activities/"+ids[0], http.StatusOK, &got)
	require.Equal(t, ids[0], got.ID.String())
	require.Equal(t, "model.deploy", got.Type)
	require.Equal(t, "u-1", got.UserID)
	require.True(t, base.Add(5*time.Minute).Equal(got.Time))
	require.JSONEq(t, `{"replicas":2}`, string(got.Details))

	// An ID of the right form that this store never assigned.
	other := openStore(t, nil)
	a := act("model.deploy", "u-1", 0)
	a.Time = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	missing := seed(t, other, a)[0]
	e := c.errorOf("/v1/activities/"+missing, http.StatusNotFound, "id")
	assert.Contains(t, e.Error, "not found")
	c.errorOf("/v1/activities/not-an-id", http.StatusBadRequest, "id")
	c.errorOf("/v1/activities/"+ids[0]+"?x=1", http.StatusBadRequest, "x")
}

func TestCount(t *testing.T) {
	s, c := setup(t)
	var got struct {
		Count int `json:"count"`
	}
	c.get("/v1/count", http.StatusOK, &got)
	require.Equal(t, 0, got.Count)

	seed(t, s, act("a", "u-1", 0), act("a", "u-2", 1), act("b", "u-1", 2))
	c.get("/v1/count", http.StatusOK, &got)
	require.Equal(t, 3, got.Count)
	c.get("/v1/count?type=a", http.StatusOK, &got)
	require.Equal(t, 2, got.Count)
	c.get("/v1/count?type=a&user=u-1", http.StatusOK, &got)
	require.Equal(t, 1, got.Count)
	c.get("/v1/count?since="+url.QueryEscape(base.Add(time.Minute).Format(time.RFC3339)), http.StatusOK, &got)
	require.Equal(t, 2, got.Count)

	c.errorOf("/v1/count?limit=1", http.StatusBadRequest, "limit")
	c.errorOf("/v1/count?since=yesterday", http.StatusBadRequest, "since")
	c.errorOf("/v1/count?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", http.StatusBadRequest, "until")
}

func TestCountBy(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0), act("a", "u-2", 1), act("b", "u-1", 2), act("a", "", 3))
	type answer struct {
		Field     string                     `json:"field"`
		Counts    []activitystore.ValueCount `json:"counts"`
		Truncated bool                       `json:"truncated"`
	}
	var got answer
	c.get("/v1/count_by?field=type", http.StatusOK, &got)
	require.Equal(t, answer{Field: "type", Counts: []activitystore.ValueCount{{Value: "a", Count: 3}, {Value: "b", Count: 1}}}, got)

	c.get("/v1/count_by?field=user&type=a", http.StatusOK, &got)
	require.Equal(t, answer{Field: "user_id", Counts: []activitystore.ValueCount{{Value: "", Count: 1}, {Value: "u-1", Count: 1}, {Value: "u-2", Count: 1}}}, got)

	c.get("/v1/count_by?field=module&type=nothing", http.StatusOK, &got)
	require.Equal(t, answer{Field: "module", Counts: []activitystore.ValueCount{}}, got)

	status, body := c.do(http.MethodGet, "/v1/count_by?field=type", "")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(body), `"truncated":false`, "truncated is always present")

	c.errorOf("/v1/count_by", http.StatusBadRequest, "field")
	c.errorOf("/v1/count_by?field=apicall", http.StatusBadRequest, "field")
	c.errorOf("/v1/count_by?field=type&field=module", http.StatusBadRequest, "field")
}

func TestTimeline(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0), act("a", "u-1", 30), act("b", "u-1", 61), act("a", "u-1", 3*60+1))
	type answer struct {
		Bucket  string                 `json:"bucket"`
		Buckets []activitystore.Bucket `json:"buckets"`
	}
	starts := func(a answer) (out []string, counts []int) {
		for _, b := range a.Buckets {
			out = append(out, b.Start.Format(time.RFC3339))
			counts = append(counts, b.Count)
		}
		return out, counts
	}

	var got answer
	c.get("/v1/timeline?bucket=1h", http.StatusOK, &got)
	require.Equal(t, "1h", got.Bucket)
	st, n := starts(got)
	require.Equal(t, []string{"2025-01-02T03:00:00Z", "2025-01-02T04:00:00Z", "2025-01-02T05:00:00Z", "2025-01-02T06:00:00Z"}, st)
	require.Equal(t, []int{2, 1, 0, 1}, n)

	c.get("/v1/timeline", http.StatusOK, &got)
	require.Equal(t, "1h", got.Bucket, "the default bucket is 1h")
	require.Len(t, got.Buckets, 4)

	c.get("/v1/timeline?bucket=1d&type=a", http.StatusOK, &got)
	require.Equal(t, "1d", got.Bucket)
	st, n = starts(got)
	require.Equal(t, []string{"2025-01-02T00:00:00Z"}, st)
	require.Equal(t, []int{3}, n)

	c.get("/v1/timeline?bucket=30m&since=2025-01-02T04:00:00Z&until=2025-01-02T05:00:00Z", http.StatusOK, &got)
	_, n = starts(got)
	require.Equal(t, []int{1, 0}, n)

	c.get("/v1/timeline?type=nothing", http.StatusOK, &got)
	require.NotNil(t, got.Buckets)
	require.Empty(t, got.Buckets)

	c.errorOf("/v1/timeline?bucket=soon", http.StatusBadRequest, "bucket")
	c.errorOf("/v1/timeline?bucket=-1h", http.StatusBadRequest, "bucket")
	c.errorOf("/v1/timeline?bucket=0d", http.StatusBadRequest, "bucket")
	c.errorOf("/v1/timeline?bucket=1ns&since=2025-01-01T00:00:00Z&until=2025-01-03T00:00:00Z", http.StatusBadRequest, "bucket")
}

// TestTimelineRangeIsTheCallers checks that another user's activity dated
// 1970 neither breaks nor shows in a user's default timeline.
func TestTimelineRangeIsTheCallers(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "alice", 0), act("a", "alice", 61))
	old := act("a", "mallory", 0)
	old.Time = time.Unix(3600, 0)
	seed(t, s, old)
	var got struct {
		Buckets []activitystore.Bucket `json:"buckets"`
	}
	c.as(aliceToken).get("/v1/timeline?bucket=1m", http.StatusOK, &got)
	require.Len(t, got.Buckets, 62, "alice's own range, 3:00 to 4:01")
	require.Equal(t, base, got.Buckets[0].Start)
	total := 0
	for _, b := range got.Buckets {
		total += b.Count
	}
	require.Equal(t, 2, total)
	// The admin's store-wide timeline at that bucket is too long, and says
	// so without an echo of anything stored.
	e := c.errorOf("/v1/timeline?bucket=1m", http.StatusBadRequest, "bucket")
	require.Less(t, len(e.Error), 300)
}

func TestHealthz(t *testing.T) {
	s, c := setup(t)
	status, body := c.as("").do(http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ok\n", string(body))

	require.NoError(t, s.Close())
	status, body = c.as("").do(http.MethodGet, "/healthz", "")
	requireError(t, status, body, http.StatusServiceUnavailable, "")
}

func TestParseBucket(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1h": time.Hour, "90s": 90 * time.Second, "1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "1h30m": 90 * time.Minute,
	} {
		got, err := parseBucket(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "-1d", "0", "1.5d", "1w", "99999999999999d"} {
		_, err := parseBucket(in)
		require.Error(t, err, in)
	}
}

// The JSON of an activity read back is the library's JSON form.
func TestActivityJSONForm(t *testing.T) {
	s, c := setup(t)
	ids := seed(t, s, act("model.deploy", "u-1", 0))
	status, body := c.do(http.MethodGet, "/v1/activities/"+ids[0], "")
	require.Equal(t, http.StatusOK, status)
	a, err := s.Get(t.Context(), mustParseID(t, ids[0]))
	require.NoError(t, err)
	want, err := json.Marshal(a)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(body))
}

func mustParseID(t *testing.T, s string) activitystore.ID {
	t.Helper()
	id, err := activitystore.ParseID(s)
	require.NoError(t, err)
	return id
}

func TestCountByLimit(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0), act("a", "u-1", 1), act("a", "u-1", 2), act("b", "u-1", 3), act("b", "u-1", 4),
		act("c", "u-1", 5), act("d", "u-1", 6))
	type answer struct {
		Counts    []activitystore.ValueCount `json:"counts"`
		Truncated *bool                      `json:"truncated"`
	}
	var got answer
	c.get("/v1/count_by?field=type&limit=2", http.StatusOK, &got)
	require.Equal(t, []activitystore.ValueCount{{Value: "a", Count: 3}, {Value: "b", Count: 2}}, got.Counts, "the most frequent")
	require.NotNil(t, got.Truncated)
	require.True(t, *got.Truncated)

	for _, path := range []string{"/v1/count_by?field=type&limit=4", "/v1/count_by?field=type&limit=100000", "/v1/count_by?field=type"} {
		got = answer{}
		c.get(path, http.StatusOK, &got)
		require.Len(t, got.Counts, 4, path)
		require.NotNil(t, got.Truncated, path)
		require.False(t, *got.Truncated, path)
	}
	got = answer{}
	c.get("/v1/count_by?field=type&limit=1&type=nothing", http.StatusOK, &got)
	require.Equal(t, []activitystore.ValueCount{}, got.Counts)
	require.False(t, *got.Truncated)

	for _, limit := range []string{"0", "-1", "100001", "x", "1&limit=2"} {
		c.errorOf("/v1/count_by?field=type&limit="+limit, http.StatusBadRequest, "limit")
	}
}

// TestPageByteBudget checks that a page of large activities stops near
// pageBudget bytes with the cursor of the rest, so that a page's memory is
// bounded whatever its limit, and that the pages together hold every match
// once; the legacy endpoint streams the whole page.
func TestPageByteBudget(t *testing.T) {
	s, c := setup(t)
	const n = 300
	details := json.RawMessage(`{"pad":"` + strings.Repeat("p", 60<<10) + `"}`)
	var want []string
	for k := 0; k < n; k += 50 {
		acts := make([]activitystore.Activity, 50)
		for i := range acts {
			acts[i] = act("a", "u-1", k+i)
			acts[i].Details = details
		}
		want = append(want, seed(t, s, acts...)...)
	}
	slices.Reverse(want)

	var got []string
	cursor, pages := "", 0
	for {
		path := "/v1/activities?limit=" + strconv.Itoa(n)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		status, body := c.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, status)
		require.Less(t, len(body), pageBudget+pageChunk*(62<<10), "a page stops near the budget")
		var page struct {
			Activities []activitystore.Activity `json:"activities"`
			Next       string                   `json:"next_cursor"`
		}
		require.NoError(t, json.Unmarshal(body, &page))
		require.NotEmpty(t, page.Activities)
		for _, a := range page.Activities {
			got = append(got, a.ID.String())
		}
		pages++
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	require.Equal(t, want, got)
	require.Greater(t, pages, 1, "18 MB of activities do not fit in one page")

	status, body := c.do(http.MethodGet, "/activity/activities/?limit="+strconv.Itoa(n)+"&skip=10", "")
	require.Equal(t, http.StatusOK, status)
	var legacy []activitystore.Activity
	require.NoError(t, json.Unmarshal(body, &legacy))
	require.Len(t, legacy, n-10)
	require.Equal(t, want[10], legacy[0].ID.String())
	require.Equal(t, want[n-1], legacy[n-11].ID.String())
}
