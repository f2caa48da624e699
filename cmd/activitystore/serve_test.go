//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildBinary builds the command into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "activitystore")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// lineCollector gathers the lines of a stream and hands them out one by one.
type lineCollector struct {
	lines chan string
	done  chan struct{} // closed at the end of the stream
	mu    sync.Mutex
	all   strings.Builder
}

func collectLines(r io.Reader) *lineCollector {
	c := &lineCollector{lines: make(chan string, 10_000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.mu.Lock()
			c.all.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			c.lines <- sc.Text()
		}
	}()
	return c
}

func (c *lineCollector) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all.String()
}

// next returns the next line, failing the test at the deadline or the end.
func (c *lineCollector) next(t *testing.T, deadline <-chan time.Time) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		require.True(t, ok, "the stream ended; so far:\n%s", c.String())
		return l
	case <-deadline:
		t.Fatalf("no line in time; so far:\n%s", c.String())
		return ""
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, typ, data string }

// readSSE sends the events of r on the returned channel, which closes at the
// end of the stream.
func readSSE(r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 10_000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "":
				if ev.typ != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(l, "id: "):
				ev.id = l[len("id: "):]
			case strings.HasPrefix(l, "event: "):
				ev.typ = l[len("event: "):]
			case strings.HasPrefix(l, "data: "):
				ev.data += l[len("data: "):]
			}
		}
	}()
	return ch
}

// client talks to the server under test with a bearer token.
type client struct {
	t     *testing.T
	base  string
	token string
}

// do sends req with the client's token and returns the status and body.
func (c client) do(req *http.Request) (int, []byte) {
	c.t.Helper()
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp.StatusCode, b
}

// getStatus gets path and returns the status and body.
func (c client) getStatus(path string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	require.NoError(c.t, err)
	return c.do(req)
}

func (c client) get(path string) []byte {
	c.t.Helper()
	code, b := c.getStatus(path)
	require.Equal(c.t, http.StatusOK, code, "GET %s: %s", path, b)
	return b
}

// post stores acts as NDJSON and returns their IDs.
func (c client) post(acts []lineJSON) []string {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+"/v1/activities", bytes.NewReader(ndjson(c.t, acts)))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-ndjson")
	code, b := c.do(req)
	require.Equal(c.t, http.StatusCreated, code, "POST /v1/activities: %s", b)
	var out struct {
		IDs []string `json:"ids"`
	}
	require.NoError(c.t, json.Unmarshal(b, &out), string(b))
	require.Len(c.t, out.IDs, len(acts))
	return out.IDs
}

// openTail starts GET /v1/tail with the query and Last-Event-ID from; when
// it returns, appends reach the stream.
func (c client) openTail(ctx context.Context, query, from string) (*http.Response, <-chan sseEvent) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/tail?"+query, nil)
	require.NoError(c.t, err)
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if from != "" {
		req.Header.Set("Last-Event-ID", from)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.t.Fatalf("GET /v1/tail: %s: %s", resp.Status, b)
	}
	return resp, readSSE(resp.Body)
}

// nextActivities reads n activity events of ch and returns their IDs and
// the cursor of the last one.
func nextActivities(t *testing.T, ch <-chan sseEvent, n int) (ids []string, cursor string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for len(ids) < n {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "the tail ended after %d of %d activities", len(ids), n)
			require.Equal(t, "activity", ev.typ, "event %+v", ev)
			require.NotEmpty(t, ev.id, "every activity event has a cursor")
			var a activitystore.Activity
			require.NoError(t, json.Unmarshal([]byte(ev.data), &a), ev.data)
			ids, cursor = append(ids, a.ID.String()), ev.id
		case <-deadline:
			t.Fatalf("%d of %d activities in time", len(ids), n)
		}
	}
	return ids, cursor
}

// idsOf decodes a JSON array of activities and returns their IDs.
func idsOf(t *testing.T, b []byte) []string {
	t.Helper()
	var acts []activitystore.Activity
	require.NoError(t, json.Unmarshal(b, &acts), string(b))
	ids := make([]string, len(acts))
	for i, a := range acts {
		ids[i] = a.ID.String()
	}
	return ids
}

func sameSet(t *testing.T, want, got []string, msgAndArgs ...any) {
	t.Helper()
	assert.ElementsMatch(t, want, got, msgAndArgs...)
}

func TestServeSubprocess(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "store")
	// An admin token and a user token.
	const adminToken, userToken, user = "adm1n-t0ken", "us3r-t0ken", "user-00000"
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte(adminToken+" ops admin\n"+userToken+" "+user+"\n"), 0o600))
	srv := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--dir", dir, "--tokens", tokens)
	stderrPipe, err := srv.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	exited := make(chan error, 1)
	stderr := collectLines(stderrPipe)
	go func() {
		// Wait closes the pipe: let the collector read it to the end first.
		<-stderr.done
		exited <- srv.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Process.Kill()
			<-exited
		}
	})

	// The address comes first on stderr, then /healthz answers.
	deadline := time.After(30 * time.Second)
	var base string
	for base == "" {
		if u, ok := strings.CutPrefix(stderr.next(t, deadline), "listening on "); ok {
			base = u
		}
	}
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, base)
	require.NotContains(t, base, ":0", "the real port, not 0")
	waitHealthy(t, base)
	c := client{t, base, adminToken}

	// Without a token, or with an unknown one, the API refuses.
	for _, token := range []string{"", "n0t-a-t0ken"} {
		code, b := client{t, base, token}.getStatus("/v1/count")
		assert.Equal(t, http.StatusUnauthorized, code, "token %q: %s", token, b)
	}

	// Post a few hundred activities as NDJSON.
	acts := generate(300, 1, time.Now().UTC().Add(-time.Minute))
	posted := c.post(acts)
	all := append([]string(nil), posted...)

	// The platform's endpoint: a JSON array, newest first, with limit/skip.
	legacy := idsOf(t, c.get("/activity/activities/?limit=1000"))
	sameSet(t, posted, legacy)
	assert.Equal(t, legacy[5:15], idsOf(t, c.get("/activity/activities/?limit=10&skip=5")))
	assert.Len(t, idsOf(t, c.get("/activity/activities/")), activitystore.DefaultLimit)

	// A cursor walk of /v1/activities meets every activity once.
	var walked []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20, "the walk does not end")
		var page struct {
			Activities []activitystore.Activity `json:"activities"`
			NextCursor string                   `json:"next_cursor"`
		}
		path := "/v1/activities?limit=37"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		require.NoError(t, json.Unmarshal(c.get(path), &page))
		for _, a := range page.Activities {
			require.False(t, seen[a.ID.String()], "%s twice", a.ID)
			seen[a.ID.String()] = true
			walked = append(walked, a.ID.String())
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	assert.Equal(t, legacy, walked, "the walk and the array agree, newest first")

	// The user token sees its own user's activities only, and another
	// user's are refused.
	uc := client{t, base, userToken}
	mine := 0
	for _, a := range acts {
		if a.UserID == user {
			mine++
		}
	}
	require.NotZero(t, mine)
	var own struct {
		Activities []activitystore.Activity `json:"activities"`
	}
	require.NoError(t, json.Unmarshal(uc.get("/v1/activities?limit=1000"), &own))
	assert.Len(t, own.Activities, mine)
	for _, a := range own.Activities {
		assert.Equal(t, user, a.UserID)
	}
	code, b := uc.getStatus("/v1/activities?user=user-00001")
	assert.Equal(t, http.StatusForbidden, code, string(b))

	// A filtered page holds exactly the matches.
	logins := 0
	for _, a := range acts {
		if a.Type == "user.login" {
			logins++
		}
	}
	var page struct {
		Activities []activitystore.Activity `json:"activities"`
	}
	require.NoError(t, json.Unmarshal(c.get("/v1/activities?type=user.login&limit=1000"), &page))
	assert.Len(t, page.Activities, logins)
	for _, a := range page.Activities {
		assert.Equal(t, "user.login", a.Type)
	}

	// The export: one JSON object per line, every activity.
	var exported []string
	sc := bufio.NewScanner(bytes.NewReader(c.get("/v1/export")))
	for sc.Scan() {
		var a activitystore.Activity
		require.NoError(t, json.Unmarshal(sc.Bytes(), &a), sc.Text())
		exported = append(exported, a.ID.String())
	}
	assert.Equal(t, walked, exported)

	// The tail: once the answer has begun, what is posted streams in order.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, events := c.openTail(ctx, "", "")
	more := c.post(generate(40, 1, time.Now().UTC()))
	all = append(all, more...)
	got, last := nextActivities(t, events, len(more))
	assert.Equal(t, more, got)
	cancel()
	resp.Body.Close()

	// Resuming after the last cursor gives what was posted in between.
	between := c.post(generate(25, 1, time.Now().UTC()))
	all = append(all, between...)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	resp2, events2 := c.openTail(ctx2, "", last)
	defer resp2.Body.Close()
	got, _ = nextActivities(t, events2, len(between))
	assert.Equal(t, between, got)

	// A filtered tail with a limit ends by itself.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	resp3, events3 := c.openTail(ctx3, "type=cli.test&limit=3", "")
	defer resp3.Body.Close()
	mixed := make([]lineJSON, 8)
	for i := range mixed {
		mixed[i] = lineJSON{Type: "other", UserID: "u-1", Time: time.Now().UTC()}
		if i%2 == 1 {
			mixed[i].Type = "cli.test"
		}
	}
	ids := c.post(mixed)
	all = append(all, ids...)
	got, _ = nextActivities(t, events3, 3)
	assert.Equal(t, []string{ids[1], ids[3], ids[5]}, got)
	select {
	case ev, ok := <-events3:
		assert.False(t, ok, "the stream ends at its limit, not with %+v", ev)
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end at its limit")
	}

	// The tail command follows the server.
	tail := exec.Command(bin, "tail", "--server", base, "--token", adminToken, "--type", "cli.test", "--limit", "2")
	tailOut, err := tail.StdoutPipe()
	require.NoError(t, err)
	var tailErr bytes.Buffer
	tail.Stderr = &tailErr
	require.NoError(t, tail.Start())
	tailLines := collectLines(tailOut)
	// It prints the header once the stream has begun: appends reach it.
	deadline = time.After(30 * time.Second)
	header := tailLines.next(t, deadline)
	assert.Equal(t, []string{"TIME", "TYPE", "USER", "MODULE", "ACTION", "RESOURCE", "ID"}, strings.Fields(header))
	ids = c.post(mixed)
	all = append(all, ids...)
	for _, want := range []string{ids[1], ids[3]} {
		cells := strings.Fields(tailLines.next(t, deadline))
		require.Len(t, cells, 7)
		assert.Equal(t, "cli.test", cells[1])
		assert.Equal(t, want, cells[6])
	}
	<-tailLines.done
	require.NoError(t, tail.Wait(), "tail: %s", tailErr.String())
	assert.Empty(t, tailErr.String())

	// SIGTERM stops the server cleanly, the open tail stream included.
	require.NoError(t, srv.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "serve's exit; stderr:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM; stderr:\n%s", stderr.String())
	}
	assert.Contains(t, stderr.String(), "shutting down")
	assert.NotContains(t, stderr.String(), "activitystore: ", "no error on the way out")
	for range events2 {
	}

	// The store was closed: it opens again, with everything posted.
	s, err := activitystore.Open(dir, nil)
	require.NoError(t, err)
	n, err := s.Query().Count(context.Background())
	require.NoError(t, s.Close())
	require.NoError(t, err)
	assert.Equal(t, len(all), n, fmt.Sprintf("%d posted", len(all)))
}

// TestServeStreamsOutliveWriteTimeout: serve's server has a write timeout,
// and the tail stream outlives it, since it sets its own write deadline.
// The timeouts are shortened here; the test waits until they have passed.
func TestServeStreamsOutliveWriteTimeout(t *testing.T) {
	s, err := activitystore.Open(filepath.Join(t.TempDir(), "store"), nil)
	require.NoError(t, err)
	defer s.Close()
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	a := &app{stderr: io.Discard}
	srv := a.newServer(endStreamsOnShutdown(streams, httpapi.New(s, httpapi.Options{})))
	require.NotZero(t, srv.WriteTimeout)
	const timeout = 200 * time.Millisecond
	srv.WriteTimeout, srv.ReadTimeout = timeout, timeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		endStreams()
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, events := client{t, "http://" + ln.Addr().String(), ""}.openTail(ctx, "", "")
	defer resp.Body.Close()
	<-time.After(3 * timeout) // past the timeouts of the request
	ids, err := s.Append(context.Background(), activitystore.Activity{Type: "late", UserID: "u"})
	require.NoError(t, err)
	got, _ := nextActivities(t, events, 1)
	assert.Equal(t, []string{ids[0].String()}, got)
}
