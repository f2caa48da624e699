package httpapi

import (
	"net/http"
	"testing"

	"github.com/activitystore/activitystore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenAuth(t *testing.T) {
	auth := TokenAuth(testTokens)
	req := func(h string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, "/", nil)
		require.NoError(t, err)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	p, err := auth(req("Bearer " + aliceToken))
	require.NoError(t, err)
	require.Equal(t, Principal{UserID: "alice"}, p)
	p, err = auth(req("bearer " + adminToken))
	require.NoError(t, err)
	require.True(t, p.Admin)
	for _, h := range []string{"", "Bearer", "Bearer ", "Bearer nope", "Basic " + aliceToken, aliceToken} {
		_, err := auth(req(h))
		require.ErrorIs(t, err, ErrUnauthenticated, h)
	}
}

func TestUnauthenticated(t *testing.T) {
	s, c := setup(t)
	ids := seed(t, s, act("a", "alice", 0))
	for _, token := range []string{"", "wrong"} {
		cc := c.as(token)
		for _, path := range []string{"/activity/activities/", "/v1/activities", "/v1/activities/" + ids[0],
			"/v1/count", "/v1/count_by?field=type", "/v1/timeline", "/v1/export", "/v1/tail"} {
			status, body := cc.do(http.MethodGet, path, "")
			requireError(t, status, body, http.StatusUnauthorized, "")
		}
		resp := cc.send(t.Context(), http.MethodPost, "/v1/activities", `{"type":"a"}`)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Equal(t, "Bearer", resp.Header.Get("WWW-Authenticate"))

		// Health and metrics need no token.
		status, _ := cc.do(http.MethodGet, "/healthz", "")
		require.Equal(t, http.StatusOK, status)
		status, _ = cc.do(http.MethodGet, "/metrics", "")
		require.Equal(t, http.StatusOK, status)
	}
	require.Equal(t, 1, count(t, s))
}

func TestNoAuthenticateServesAsAdmin(t *testing.T) {
	s := openStore(t, nil)
	c := serve(t, s, Options{})
	seed(t, s, act("a", "alice", 0), act("a", "bob", 1))
	var p listPage
	c.get("/v1/activities", http.StatusOK, &p)
	require.Len(t, p.Activities, 2)
	c.postIDs(`{"type":"a","user_id":"carol"}`, "application/json")
}

func TestAccessScope(t *testing.T) {
	s, admin := setup(t)
	alice := admin.as(aliceToken)
	mine := seed(t, s, act("a", "alice", 0), act("b", "alice", 1))
	theirs := seed(t, s, act("a", "bob", 2), act("a", "", 3))

	// Queries without a user filter are limited to the principal's user.
	var p listPage
	alice.get("/v1/activities", http.StatusOK, &p)
	require.Equal(t, reversed(mine), idsOf(p.Activities))
	alice.get("/v1/activities?user=alice&type=a", http.StatusOK, &p)
	require.Equal(t, mine[:1], idsOf(p.Activities))
	var legacy []activitystore.Activity
	alice.get("/activity/activities/", http.StatusOK, &legacy)
	require.Equal(t, reversed(mine), idsOf(legacy))
	var n struct {
		Count int `json:"count"`
	}
	alice.get("/v1/count", http.StatusOK, &n)
	require.Equal(t, 2, n.Count)
	var by struct {
		Counts []activitystore.ValueCount `json:"counts"`
	}
	alice.get("/v1/count_by?field=user_id", http.StatusOK, &by)
	require.Equal(t, []activitystore.ValueCount{{Value: "alice", Count: 2}}, by.Counts)
	var tl struct {
		Buckets []activitystore.Bucket `json:"buckets"`
	}
	alice.get("/v1/timeline?bucket=1d", http.StatusOK, &tl)
	require.Len(t, tl.Buckets, 1)
	require.Equal(t, 2, tl.Buckets[0].Count)
	status, body := alice.do(http.MethodGet, "/v1/export", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, reversed(mine), exportedIDs(t, body))
	var a activitystore.Activity
	alice.get("/v1/activities/"+mine[0], http.StatusOK, &a)

	// The admin sees everything.
	admin.get("/v1/activities", http.StatusOK, &p)
	require.Len(t, p.Activities, 4)
	admin.get("/v1/activities/"+theirs[0], http.StatusOK, &a)

	// Asking for anyone else's is a 403 naming what asked, never a
	// filtered answer.
	for _, path := range []string{"/v1/activities?user=bob", "/v1/activities?user=alice&user=bob", "/v1/activities?user=",
		"/v1/count?user=bob", "/v1/count_by?field=type&user=bob", "/v1/timeline?user=bob",
		"/v1/export?user=bob", "/v1/tail?user=bob"} {
		alice.errorOf(path, http.StatusForbidden, "user")
	}
	for _, id := range theirs {
		alice.errorOf("/v1/activities/"+id, http.StatusForbidden, "id")
	}

	// A principal that is neither an admin nor has a user gets nothing.
	nobody := admin.as(nobodyToken)
	nobody.errorOf("/v1/activities", http.StatusForbidden, "")
	status, body = nobody.post(`{"type":"a"}`, "application/json")
	requireError(t, status, body, http.StatusForbidden, "")
	require.Equal(t, 4, count(t, s))
}

func TestAccessWrite(t *testing.T) {
	s, admin := setup(t)
	alice := admin.as(aliceToken)

	// Without user_id, a non-admin's activity is stored under its user;
	// the admin's is a system event.
	ids := alice.postIDs(`[{"type":"a"},{"type":"b","user_id":"alice"}]`, "application/json")
	assert.Equal(t, "alice", get(t, s, ids[0]).UserID)
	assert.Equal(t, "alice", get(t, s, ids[1]).UserID)
	ids = admin.postIDs(`[{"type":"a"},{"type":"b","user_id":"bob"}]`, "application/json")
	assert.Equal(t, "", get(t, s, ids[0]).UserID)
	assert.Equal(t, "bob", get(t, s, ids[1]).UserID)
	require.Equal(t, 4, count(t, s))

	// Another user's activity is a 403 that names it, and nothing of the
	// request is stored.
	status, body := alice.post(`[{"type":"a"},{"type":"a"},{"type":"b","user_id":"bob"}]`, "application/json")
	e := requireError(t, status, body, http.StatusForbidden, "user_id")
	require.NotNil(t, e.Index)
	require.Equal(t, 2, *e.Index)
	status, body = alice.post("{\"type\":\"a\"}\n\n{\"type\":\"a\",\"user_id\":\"bob\"}\n", "application/x-ndjson")
	e = requireError(t, status, body, http.StatusForbidden, "user_id")
	require.NotNil(t, e.Line)
	require.Equal(t, 3, *e.Line)
	status, body = alice.post(`{"type":"a","user_id":"bob"}`, "application/json")
	requireError(t, status, body, http.StatusForbidden, "user_id")
	require.Equal(t, 4, count(t, s))
}
