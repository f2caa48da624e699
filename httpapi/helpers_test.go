package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/stretchr/testify/require"
)

// base is the event time the tests' activities are placed around.
var base = time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)

// Tokens of the tests' principals.
const (
	adminToken  = "t-admin"
	aliceToken  = "t-alice"
	bobToken    = "t-bob"
	nobodyToken = "t-nobody"
)

var testTokens = map[string]Principal{
	adminToken:  {UserID: "root", Admin: true},
	aliceToken:  {UserID: "alice"},
	bobToken:    {UserID: "bob"},
	nobodyToken: {},
}

// openStore opens a store in a temporary folder, closed at the end of the
// test.
func openStore(t *testing.T, opts *activitystore.Options) *activitystore.Store {
	t.Helper()
	s, err := activitystore.Open(t.TempDir(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// client talks to a test server.
type client struct {
	t     *testing.T
	url   string
	token string
}

// serve starts a server of the handler on s, closed at the end of the test.
func serve(t *testing.T, s *activitystore.Store, o Options) *client {
	t.Helper()
	return serveHandler(t, newHandler(s, o))
}

// serveHandler starts a server of h, closed at the end of the test.
func serveHandler(t *testing.T, h *handler) *client {
	t.Helper()
	srv := httptest.NewServer(h.mux)
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL}
}

// setup opens a store and serves it with TokenAuth(testTokens); the client
// acts as the admin.
func setup(t *testing.T) (*activitystore.Store, *client) {
	t.Helper()
	s := openStore(t, nil)
	return s, serve(t, s, Options{Authenticate: TokenAuth(testTokens)}).as(adminToken)
}

// as returns a client that sends token.
func (c *client) as(token string) *client {
	cc := *c
	cc.token = token
	return &cc
}

// do sends a request and returns the status and the body. hdr holds header
// names and values, in pairs.
func (c *client) do(method, path, body string, hdr ...string) (int, []byte) {
	c.t.Helper()
	resp := c.send(context.Background(), method, path, body, hdr...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp.StatusCode, b
}

// send sends a request and returns the response, its body unread.
func (c *client) send(ctx context.Context, method, path, body string, hdr ...string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	require.NoError(c.t, err)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	return resp
}

// get sends a GET, requires status want and decodes the JSON answer into v
// (unless v is nil).
func (c *client) get(path string, want int, v any) {
	c.t.Helper()
	status, body := c.do(http.MethodGet, path, "")
	require.Equal(c.t, want, status, "GET %s: %s", path, body)
	if v != nil {
		require.NoError(c.t, json.Unmarshal(body, v), "GET %s: %s", path, body)
	}
}

// post sends body to POST /v1/activities with the given Content-Type.
func (c *client) post(body, contentType string) (int, []byte) {
	c.t.Helper()
	return c.do(http.MethodPost, "/v1/activities", body, "Content-Type", contentType)
}

// postIDs posts body, requires a 201 and returns the IDs.
func (c *client) postIDs(body, contentType string) []string {
	c.t.Helper()
	status, b := c.post(body, contentType)
	require.Equal(c.t, http.StatusCreated, status, "%s", b)
	var out struct {
		IDs []string `json:"ids"`
	}
	require.NoError(c.t, json.Unmarshal(b, &out))
	return out.IDs
}

// apiErr is an error answer as a client sees it.
type apiErr struct {
	Error string `json:"error"`
	Field string `json:"field"`
	Index *int   `json:"index"`
	Line  *int   `json:"line"`
}

// requireError checks that an answer is an error with the given status and
// field, and returns it.
func requireError(t *testing.T, status int, body []byte, wantStatus int, wantField string) apiErr {
	t.Helper()
	require.Equal(t, wantStatus, status, "%s", body)
	var e apiErr
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	require.NotEmpty(t, e.Error)
	require.Equal(t, wantField, e.Field, "%s", body)
	return e
}

// errorOf sends a GET and checks that it is an error with the given status
// and field.
func (c *client) errorOf(path string, wantStatus int, wantField string) apiErr {
	c.t.Helper()
	status, body := c.do(http.MethodGet, path, "")
	return requireError(c.t, status, body, wantStatus, wantField)
}

// act returns an activity of type typ by user at base+minutes.
func act(typ, user string, minutes int) activitystore.Activity {
	return activitystore.Activity{
		Type: typ, UserID: user, Module: "models", Action: "deploy",
		APICall: "POST /api/serving/deploy", Resource: "model/7",
		Time:    base.Add(time.Duration(minutes) * time.Minute),
		Details: json.RawMessage(`{"replicas":2}`),
	}
}

// seed appends acts to s and returns their IDs as text.
func seed(t *testing.T, s *activitystore.Store, acts ...activitystore.Activity) []string {
	t.Helper()
	ids, err := s.Append(context.Background(), acts...)
	require.NoError(t, err)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// count returns the number of activities in s.
func count(t *testing.T, s *activitystore.Store) int {
	t.Helper()
	n, err := s.Query().Count(context.Background())
	require.NoError(t, err)
	return n
}

// idsOf returns the IDs of acts.
func idsOf(acts []activitystore.Activity) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.ID.String()
	}
	return out
}

// reversed returns a reversed copy of s.
func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// sseEvent is one block of a Server-Sent Events stream.
type sseEvent struct {
	id, event, data string
	comments        []string
}

// stream is an open tail.
type stream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
}

// tailStream opens GET path as an event stream; reads fail after a deadline
// instead of hanging. The stream is closed at the end of the test.
func (c *client) tailStream(path string, hdr ...string) *stream {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp := c.send(ctx, http.MethodGet, path, "", hdr...)
	c.t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	require.Equal(c.t, "text/event-stream", resp.Header.Get("Content-Type"))
	return &stream{t: c.t, resp: resp, br: bufio.NewReader(resp.Body)}
}

// next reads the next block of the stream: an event, or comments.
func (s *stream) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return ev, nil
			}
			continue
		}
		seen = true
		switch {
		case strings.HasPrefix(line, ":"):
			ev.comments = append(ev.comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if ev.data != "" {
				ev.data += "\n"
			}
			ev.data += line[len("data: "):]
		}
	}
}

// event reads blocks until an event (not a comment) and returns it.
func (s *stream) event() sseEvent {
	s.t.Helper()
	for {
		ev, err := s.next()
		require.NoError(s.t, err)
		if ev.event != "" {
			return ev
		}
	}
}

// activity reads the next event, requires it to be an activity and returns
// it with its cursor.
func (s *stream) activity() (activitystore.Activity, string) {
	s.t.Helper()
	ev := s.event()
	require.Equal(s.t, "activity", ev.event, "%+v", ev)
	require.NotEmpty(s.t, ev.id)
	var a activitystore.Activity
	require.NoError(s.t, json.Unmarshal([]byte(ev.data), &a))
	return a, ev.id
}

// streamWatch tells when the export and tail handlers of a handler end.
type streamWatch struct {
	ended chan struct{}
}

// watchStreams sets the onStreamEnd hook of h, which must not serve yet.
func watchStreams(h *handler) *streamWatch {
	w := &streamWatch{ended: make(chan struct{}, 64)}
	h.onStreamEnd = func() { w.ended <- struct{}{} }
	return w
}

// waitEnd waits for a stream handler to end, for at most 10 seconds.
func (w *streamWatch) waitEnd(t *testing.T, what string) {
	t.Helper()
	select {
	case <-w.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the stream handler is still running after 10s", what)
	}
}
