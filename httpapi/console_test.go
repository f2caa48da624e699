package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/activitystore/activitystore"
)

var screenshots = flag.String("console.screenshots", "", "a folder to save screenshots of the console's main views into (docs/ keeps them)")

// chromium returns the path of a Chromium to drive, skipping the test
// outside CI when there is none (.ci/run installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: .ci/run installs it")
	}
	t.Skip("no chromium on this machine (apt-get install chromium)")
	return ""
}

// TestConsole drives the web console in a real headless Chromium: it signs
// in with a token, filters, zooms the timeline by dragging, opens a row,
// follows the live mode, and checks that a user who is not an admin sees
// only their own activities.
func TestConsole(t *testing.T) {
	exe := chromium(t)
	s := openStore(t, nil)
	now := time.Now().UTC().Truncate(time.Second)
	var acts []activitystore.Activity
	for i := range 240 {
		typ := []string{"user.login", "model.deploy", "lab.open"}[i%3]
		user := []string{"alice", "bob"}[i%2]
		acts = append(acts, activitystore.Activity{
			Time: now.Add(-time.Duration(240-i) * time.Minute), Type: typ, UserID: user,
			Module: strings.Split(typ, ".")[0], Action: strings.Split(typ, ".")[1], Resource: fmt.Sprintf("r/%d", i%7),
			Details: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
		})
	}
	srv := httptest.NewServer(New(s, Options{Authenticate: TokenAuth(testTokens)}))
	t.Cleanup(srv.Close)
	// post stores activities through the API, as the admin.
	post := func(acts ...activitystore.Activity) []string {
		t.Helper()
		body, err := json.Marshal(acts)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/activities", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct{ IDs []string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		return out.IDs
	}
	post(acts...)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1400, 1000))
	actx, cancelA := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	// loaded runs action and waits for the views to load after it, by the
	// marker app.js sets.
	loaded := func(action chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			before, err := chromedp.Evaluate[string](`document.body.dataset.loaded || ""`)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			if _, err := action(ctx, tg); err != nil {
				return chromedp.Void{}, err
			}
			_, err = chromedp.Poll[bool](fmt.Sprintf(`(document.body.dataset.loaded || "") !== %q`, before))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	eval := func(expr string, out any) {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(v, out))
	}
	str := func(a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		require.NoError(t, err)
		return v
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	type rowInfo struct{ ID, Time, User, Type string }
	rows := func() []rowInfo {
		var out []rowInfo
		eval(`[...document.querySelectorAll("#rows tr")].map(r => ({ID: r.dataset.id, Time: r.dataset.time, User: r.dataset.user, Type: r.dataset.type}))`, &out)
		return out
	}
	shot := func(name string) {
		if *screenshots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(*screenshots, name), png, 0o644))
	}

	// Sign in as the admin: the newest 50 of everyone, newest first.
	do(chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), adminToken),
		loaded(chromedp.Click(css("#use-token"))),
	)
	got := rows()
	require.Len(t, got, 50)
	require.Equal(t, acts[len(acts)-1].Type, got[0].Type)
	shot("console.png")

	// Load more by cursor.
	do(chromedp.Click(css("#more")))
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("#rows tr").length === 100`))
	require.NoError(t, err)

	// A filter: only its rows, and the URL keeps it.
	do(chromedp.SendKeys(css("#f-type"), "model.deploy"), loaded(chromedp.Click(css("#apply"))))
	got = rows()
	require.Len(t, got, 50)
	for _, r := range got {
		require.Equal(t, "model.deploy", r.Type)
	}
	require.Contains(t, str(chromedp.Location()), "type=model.deploy")
	tops := str(chromedp.Text(css(`#tops ol[data-field="type"]`)))
	require.Contains(t, tops, "model.deploy 80")

	// Drag over the middle of the timeline: the list zooms to that range.
	var box []float64
	eval(`(() => { const b = document.getElementById("timeline").getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; })()`, &box)
	x0, x1, y := box[0]+box[2]*0.3, box[0]+box[2]*0.6, box[1]+box[3]/2
	do(loaded(chromedp.Steps(
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x0, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x1, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
	)))
	since, until := str(chromedp.Value(css("#f-since"))), str(chromedp.Value(css("#f-until")))
	require.Contains(t, str(chromedp.Location()), "since=")
	lo, err := time.Parse(time.RFC3339, since)
	require.NoError(t, err)
	hi, err := time.Parse(time.RFC3339, until)
	require.NoError(t, err)
	require.True(t, lo.After(acts[0].Time) && hi.Before(now), "zoomed to %s – %s", lo, hi)
	got = rows()
	require.NotEmpty(t, got)
	require.Less(t, len(got), 80)
	for _, r := range got {
		at, err := time.Parse(time.RFC3339Nano, r.Time)
		require.NoError(t, err)
		require.True(t, !at.Before(lo) && at.Before(hi), "%s outside %s – %s", at, lo, hi)
		require.Equal(t, "model.deploy", r.Type)
	}
	shot("console-zoomed.png")

	// A row's raw JSON in the detail pane.
	do(chromedp.Click(css("#rows tr:first-child")))
	raw := str(chromedp.Text(css("#raw")))
	require.Contains(t, raw, got[0].ID)
	require.Contains(t, raw, `"details"`)

	// Live: an activity stored afterwards shows at the top within 2 s.
	do(loaded(chromedp.Click(css("#clear"))), chromedp.Click(css("#live")))
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.live === "on"`))
	require.NoError(t, err)
	ids := post(activitystore.Activity{Type: "model.deploy", UserID: "carol", Module: "model", Action: "deploy"})
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = chromedp.Run(lctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector("#rows tr").dataset.id === %q`, ids[0])))
	lcancel()
	require.NoError(t, err, "the live activity did not show within 2 s")
	shot("console-live.png")

	// alice, not an admin, sees only her own rows, live ones included.
	do(chromedp.Click(css("#live")), chromedp.SetValue(css("#token"), aliceToken), loaded(chromedp.Click(css("#use-token"))), chromedp.Click(css("#live")))
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.live === "on"`))
	require.NoError(t, err)
	post(activitystore.Activity{Type: "user.login", UserID: "bob"})
	mine := post(activitystore.Activity{Type: "user.login", UserID: "alice"})
	lctx, lcancel = context.WithTimeout(ctx, 2*time.Second)
	_, err = chromedp.Run(lctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector("#rows tr").dataset.id === %q`, mine[0])))
	lcancel()
	require.NoError(t, err)
	got = rows()
	require.NotEmpty(t, got)
	for _, r := range got {
		require.Equal(t, "alice", r.User, "a row of another user")
	}
	tops = str(chromedp.Text(css(`#tops ol[data-field="user_id"]`)))
	require.NotContains(t, tops, "bob")
}
