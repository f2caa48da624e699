package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/client"
	"github.com/activitystore/activitystore/httpapi"
)

var tokens = map[string]httpapi.Principal{
	"admin-t": {UserID: "ops", Admin: true},
	"alice-t": {UserID: "alice"},
}

var base = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// setup starts a real server over a store with a few days of activities
// and returns the store, the server and an admin client.
func setup(t *testing.T) (*activitystore.Store, *httptest.Server, *client.Client) {
	t.Helper()
	s, err := activitystore.Open(t.TempDir(), &activitystore.Options{Now: func() time.Time { return base.Add(5 * 24 * time.Hour) }})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	var acts []activitystore.Activity
	for i := range 300 {
		acts = append(acts, activitystore.Activity{
			Time: base.Add(time.Duration(i) * 17 * time.Minute), Type: fmt.Sprintf("t%d", i%3),
			UserID: []string{"alice", "bob", ""}[i%3], Module: "m", Action: "a", Resource: fmt.Sprintf("r/%d", i%5),
			Details: []byte(fmt.Sprintf(`{"i":%d}`, i)),
		})
	}
	_, err = s.Append(context.Background(), acts...)
	require.NoError(t, err)
	srv := httptest.NewServer(httpapi.New(s, httpapi.Options{Authenticate: httpapi.TokenAuth(tokens)}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, &client.Options{Token: "admin-t"})
	require.NoError(t, err)
	return s, srv, c
}

func ids(acts []activitystore.Activity) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.ID.String() + " " + a.Type + " " + a.UserID + " " + string(a.Details) + " " + a.Time.Format(time.RFC3339Nano)
	}
	return out
}

// TestQueriesMatchTheLibrary runs the same queries through the library and
// through the client and requires the same answers.
func TestQueriesMatchTheLibrary(t *testing.T) {
	ctx := context.Background()
	s, _, c := setup(t)
	type both struct {
		lib *activitystore.Query
		cli *client.Query
	}
	cases := []both{
		{s.Query(), c.Query()},
		{s.Query().Types("t1"), c.Query().Types("t1")},
		{s.Query().Users("alice", "bob").Limit(7).Skip(3), c.Query().Users("alice", "bob").Limit(7).Skip(3)},
		{s.Query().System().Resources("r/1", "r/2"), c.Query().System().Resources("r/1", "r/2")},
		{s.Query().Modules("m").Actions("a").Since(base.Add(24 * time.Hour)).Until(base.Add(48 * time.Hour)).Limit(1000),
			c.Query().Modules("m").Actions("a").Since(base.Add(24 * time.Hour)).Until(base.Add(48 * time.Hour)).Limit(1000)},
	}
	for i, q := range cases {
		lp, err := q.lib.All(ctx)
		require.NoError(t, err)
		cp, err := q.cli.All(ctx)
		require.NoError(t, err)
		require.Equal(t, ids(lp.Activities), ids(cp.Activities), "case %d", i)
		require.Equal(t, lp.Next, cp.Next, "case %d", i)
		if lp.Next != "" {
			lp, err = q.lib.After(lp.Next).All(ctx)
			require.NoError(t, err)
			cp, err = q.cli.After(cp.Next).All(ctx)
			require.NoError(t, err)
			require.Equal(t, ids(lp.Activities), ids(cp.Activities), "case %d, next page", i)
			q.lib.After("")
			q.cli.After("")
		}
		ln, err := q.lib.Count(ctx)
		require.NoError(t, err)
		cn, err := q.cli.Count(ctx)
		require.NoError(t, err)
		require.Equal(t, ln, cn, "case %d count", i)
		lv, err := q.lib.CountBy(ctx, "resource")
		require.NoError(t, err)
		cv, err := q.cli.CountBy(ctx, "resource")
		require.NoError(t, err)
		require.Equal(t, lv, cv, "case %d count_by", i)
		lt, err := q.lib.Timeline(ctx, 6*time.Hour)
		require.NoError(t, err)
		ct, err := q.cli.Timeline(ctx, 6*time.Hour)
		require.NoError(t, err)
		require.Equal(t, len(lt), len(ct), "case %d timeline", i)
		for k := range lt {
			require.True(t, lt[k].Start.Equal(ct[k].Start), "case %d bucket %d", i, k)
			require.Equal(t, lt[k].Count, ct[k].Count, "case %d bucket %d", i, k)
		}
		var li, ci []activitystore.Activity
		for a, err := range q.lib.Limit(0).Iter(ctx) {
			require.NoError(t, err)
			li = append(li, a)
		}
		for a, err := range q.cli.Limit(0).Iter(ctx) {
			require.NoError(t, err)
			ci = append(ci, a)
		}
		require.Equal(t, ids(li), ids(ci), "case %d iter", i)
	}
	// Iter with a limit stops there.
	n := 0
	for _, err := range c.Query().Limit(5).Iter(ctx) {
		require.NoError(t, err)
		n++
	}
	require.Equal(t, 5, n)
}

// TestErrors checks that the client's errors are the library's where they
// mean the same.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	_, srv, c := setup(t)
	recent, err := c.Recent(ctx, 1, 0)
	require.NoError(t, err)
	missing := recent[0].ID
	missing[15] ^= 0xff
	_, err = c.Get(ctx, missing)
	require.ErrorIs(t, err, activitystore.ErrNotFound)

	_, err = c.Query().Limit(activitystore.MaxLimit + 1).All(ctx)
	var qe *activitystore.QueryError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "limit", qe.Field)
	require.ErrorIs(t, err, activitystore.ErrInvalidQuery)

	_, err = c.Append(ctx, activitystore.Activity{Type: "ok"}, activitystore.Activity{Type: ""})
	var ve *activitystore.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, 1, ve.Index)
	require.Equal(t, "type", ve.Field)
	require.ErrorIs(t, err, activitystore.ErrInvalidActivity)

	anon, err := client.New(srv.URL, nil)
	require.NoError(t, err)
	_, err = anon.Recent(ctx, 1, 0)
	require.ErrorIs(t, err, client.ErrUnauthorized)

	alice, err := client.New(srv.URL, &client.Options{Token: "alice-t"})
	require.NoError(t, err)
	_, err = alice.Query().Users("bob").All(ctx)
	require.ErrorIs(t, err, client.ErrForbidden)
	page, err := alice.Query().Limit(1000).All(ctx)
	require.NoError(t, err)
	for _, a := range page.Activities {
		require.Equal(t, "alice", a.UserID, "a user sees only her own")
	}
	require.Len(t, page.Activities, 100)

	_, err = client.New("ftp://x", nil)
	require.Error(t, err)
}

// record is what a service would write: it takes either an embedded store
// or a client.
func record(ctx context.Context, acts activitystore.Activities, user string) (activitystore.Activity, error) {
	ids, err := acts.Append(ctx, activitystore.Activity{Type: "user.login", UserID: user, Module: "auth", Action: "login"})
	if err != nil {
		return activitystore.Activity{}, err
	}
	return acts.Get(ctx, ids[0])
}

// TestActivitiesInterface records through the store and through the client
// with the same function.
func TestActivitiesInterface(t *testing.T) {
	ctx := context.Background()
	s, _, c := setup(t)
	for _, acts := range []activitystore.Activities{s, c} {
		a, err := record(ctx, acts, "carol")
		require.NoError(t, err)
		require.Equal(t, "carol", a.UserID)
		recent, err := acts.Recent(ctx, 1, 0)
		require.NoError(t, err)
		require.Len(t, recent, 1)
	}
	n, err := c.Query().Users("carol").Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// TestTailReconnects follows the tail, drops the connection in the middle,
// and requires every appended activity once, in order.
func TestTailReconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, srv, c := setup(t)
	got := make(chan activitystore.TailEvent, 16)
	errs := make(chan error, 16)
	go func() {
		for ev, err := range c.Tail(ctx, c.Query().Types("live"), "") {
			if err != nil {
				errs <- err
				continue
			}
			got <- ev
		}
	}()
	// The tail is open once an activity appended now reaches it.
	var want []string
	appendLive := func(i int) {
		ids, err := s.Append(ctx, activitystore.Activity{Type: "live", Details: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		require.NoError(t, err)
		want = append(want, ids[0].String())
	}
	var seen []string
	for i := 0; len(seen) == 0; i++ {
		appendLive(i)
		select {
		case ev := <-got:
			seen = append(seen, ev.Activity.ID.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Earlier appends may have come before the tail opened.
	want = want[len(want)-1:]
	srv.CloseClientConnections()
	for i := range 5 {
		appendLive(100 + i)
	}
	for len(seen) < len(want) {
		select {
		case ev := <-got:
			seen = append(seen, ev.Activity.ID.String())
			require.NotEmpty(t, ev.Cursor)
		case err := <-errs:
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatalf("got %d of %d activities", len(seen), len(want))
		}
	}
	require.Equal(t, want, seen)
	select {
	case ev := <-got:
		t.Fatalf("an extra activity: %v", ev.Activity.ID)
	case <-time.After(200 * time.Millisecond):
	}
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
}
