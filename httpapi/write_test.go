package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get reads an activity of s by ID text.
func get(t *testing.T, s *activitystore.Store, id string) activitystore.Activity {
	t.Helper()
	a, err := s.Get(context.Background(), mustParseID(t, id))
	require.NoError(t, err)
	return a
}

func TestPostObject(t *testing.T) {
	s, c := setup(t)
	ids := c.postIDs(`{"type":"model.deploy","user_id":"u-42","module":"models","action":"deploy",
		"apicall":"POST /api/serving/deploy","resource":"model/7","details":{"replicas":2},
		"timestamp":"2025-01-02T15:04:05.123456789Z"}`, "application/json")
	require.Len(t, ids, 1)
	a := get(t, s, ids[0])
	assert.Equal(t, "model.deploy", a.Type)
	assert.Equal(t, "u-42", a.UserID)
	assert.Equal(t, "models", a.Module)
	assert.Equal(t, "deploy", a.Action)
	assert.Equal(t, "POST /api/serving/deploy", a.APICall)
	assert.Equal(t, "model/7", a.Resource)
	assert.JSONEq(t, `{"replicas":2}`, string(a.Details))
	assert.True(t, time.Date(2025, 1, 2, 15, 4, 5, 123456789, time.UTC).Equal(a.Time), a.Time)

	// Any Content-Type other than NDJSON is read as JSON, e.g. curl's default.
	ids = c.postIDs(`{"type":"x"}`, "application/x-www-form-urlencoded")
	require.Len(t, ids, 1)
}

func TestPostArray(t *testing.T) {
	s, c := setup(t)
	before := time.Now().Add(-time.Second)
	ids := c.postIDs(`[
		{"type":"a","time":"2025-01-02T00:00:00Z"},
		{"type":"b","timestamp":"2025-01-02T00:00:01+01:00"},
		{"type":"c","created_at":"2025-01-02T00:00:02Z"},
		{"type":"d","time":"2025-01-02T00:00:03Z","timestamp":"2025-01-02T01:00:03+01:00"},
		{"type":"e"},
		{"type":"f","details":null,"id":null}
	]`, "application/json")
	require.Len(t, ids, 6)
	want := []struct {
		typ string
		at  time.Time
	}{
		{"a", time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"b", time.Date(2025, 1, 1, 23, 0, 1, 0, time.UTC)},
		{"c", time.Date(2025, 1, 2, 0, 0, 2, 0, time.UTC)},
		{"d", time.Date(2025, 1, 2, 0, 0, 3, 0, time.UTC)},
	}
	for i, w := range want {
		a := get(t, s, ids[i])
		assert.Equal(t, w.typ, a.Type)
		assert.True(t, w.at.Equal(a.Time), "%s: %s", w.typ, a.Time)
	}
	e := get(t, s, ids[4])
	assert.True(t, e.Time.After(before), "no time means now: %s", e.Time)
	assert.Empty(t, get(t, s, ids[5]).Details)
}

func TestPostNDJSON(t *testing.T) {
	s, c := setup(t)
	body := "{\"type\":\"a\",\"user_id\":\"u-1\"}\n\n  \r\n{\"type\":\"b\"}\r\n{\"type\":\"c\"}"
	for _, ct := range []string{"application/x-ndjson", "application/x-ndjson; charset=utf-8", "application/jsonl",
		// Malformed, yet plainly NDJSON.
		"application/x-ndjson; charset", "Application/X-NDJSON ;", "application/ndjson; charset=utf-8; charset=utf-8"} {
		ids := c.postIDs(body, ct)
		require.Len(t, ids, 3, ct)
		assert.Equal(t, "a", get(t, s, ids[0]).Type)
		assert.Equal(t, "u-1", get(t, s, ids[0]).UserID)
		assert.Equal(t, "b", get(t, s, ids[1]).Type)
		assert.Equal(t, "c", get(t, s, ids[2]).Type)
	}
	// An exported line posts back as is: its id is ignored.
	status, line := c.do(http.MethodGet, "/v1/export?type=a", "")
	require.Equal(t, http.StatusOK, status)
	ids := c.postIDs(strings.SplitN(string(line), "\n", 2)[0], "application/x-ndjson")
	require.Len(t, ids, 1)
	assert.Equal(t, "u-1", get(t, s, ids[0]).UserID)
}

func TestPostRefused(t *testing.T) {
	const json, ndjson = "application/json", "application/x-ndjson"
	idx := func(i int) *int { return &i }
	cases := []struct {
		name        string
		body, ctype string
		status      int
		field       string
		index, line *int
	}{
		{"array: bad JSON", `[{"type":"a"},{"type":"b"},{"type":}]`, json, 400, "", idx(2), nil},
		{"array: missing comma", `[{"type":"a"} {"type":"b"}]`, json, 400, "", idx(1), nil},
		{"array: unknown field", `[{"type":"a"},{"type":"b","usr":"x"}]`, json, 400, "usr", idx(1), nil},
		{"array: ill-typed field", `[{"type":5}]`, json, 400, "type", idx(0), nil},
		{"array: not an object", `[{"type":"a"},"b"]`, json, 400, "", idx(1), nil},
		{"array: missing type", `[{"type":"a"},{"user_id":"u"}]`, json, 400, "type", idx(1), nil},
		{"array: details not an object", `[{"type":"a"},{"type":"b"},{"type":"c","details":[1]}]`, json, 400, "details", idx(2), nil},
		{"array: bad time", `[{"type":"a","created_at":"yesterday"}]`, json, 400, "created_at", idx(0), nil},
		{"array: far future", `[{"type":"a","time":"2999-01-01T00:00:00Z"}]`, json, 400, "time", idx(0), nil},
		{"array: bad id", `[{"type":"a","id":"x"}]`, json, 400, "id", idx(0), nil},
		{"array: year 1", `[{"type":"a"},{"type":"a","time":"0001-01-01T00:00:00Z"}]`, json, 400, "time", idx(1), nil},
		{"array: details 2000 deep", `[{"type":"a","details":{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}}]`, json, 400, "details", idx(0), nil},
		{"array: label too long", `[{"type":"a","module":"` + strings.Repeat("m", 300) + `"}]`, json, 400, "module", idx(0), nil},
		{"array: not closed", `[{"type":"a"}`, json, 400, "", nil, nil},
		{"array: trailing data", `[{"type":"a"}] x`, json, 400, "", nil, nil},
		{"object: missing type", `{"module":"m"}`, json, 400, "type", idx(0), nil},
		{"object: unknown field", `{"type":"a","extra":1}`, json, 400, "extra", idx(0), nil},
		{"object: trailing object", `{"type":"a"} {"type":"b"}`, json, 400, "", nil, nil},
		{"empty body", ``, json, 400, "", nil, nil},
		{"empty array", `[]`, json, 400, "", nil, nil},
		{"not JSON", `type=a`, json, 400, "", nil, nil},
		{"ndjson: bad JSON", "{\"type\":\"a\"}\n\n{\"type\":\n", ndjson, 400, "", nil, idx(3)},
		{"ndjson: unknown field", "{\"type\":\"a\"}\n{\"type\":\"a\"}\n\n\n{\"type\":\"a\",\"mdule\":\"x\"}\n", ndjson, 400, "mdule", nil, idx(5)},
		{"ndjson: ill-typed", "\n{\"type\":\"a\",\"details\":{},\"user_id\":[1]}", ndjson, 400, "user_id", nil, idx(2)},
		{"ndjson: validation", "{\"type\":\"a\"}\n\n{\"type\":\"\"}\n", ndjson, 400, "type", nil, idx(3)},
		{"ndjson: two objects on a line", "{\"type\":\"a\"} {\"type\":\"b\"}\n", ndjson, 400, "", nil, idx(1)},
		{"ndjson: array line", "[{\"type\":\"a\"}]\n", ndjson, 400, "", nil, idx(1)},
		{"ndjson: only blank lines", "\n\n", ndjson, 400, "", nil, nil},
		{"ndjson: line too long", "{\"type\":\"a\"}\n" + strings.Repeat(" ", maxLineBytes+1) + "\n", ndjson, 400, "", nil, idx(2)},
	}
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := c.post(tc.body, tc.ctype)
			e := requireError(t, status, body, tc.status, tc.field)
			assert.Equal(t, tc.index, e.Index, "index: %s", body)
			assert.Equal(t, tc.line, e.Line, "line: %s", body)
			require.Equal(t, 1, count(t, s), "nothing of a refused request is stored")
		})
	}
}

func TestPostTooLarge(t *testing.T) {
	s := openStore(t, nil)
	c := serve(t, s, Options{MaxBodyBytes: 1000})

	small := `[{"type":"a"}]`
	require.Len(t, c.postIDs(small, "application/json"), 1)

	// The answer tells a bulk import to split itself.
	const advice = "more than 100000 activities or 1000 bytes must be split into several requests"
	big := `[` + strings.Repeat(`{"type":"a"},`, 100) + `{"type":"a"}]`
	status, body := c.post(big, "application/json")
	e := requireError(t, status, body, http.StatusRequestEntityTooLarge, "")
	assert.Contains(t, e.Error, advice)

	one := `{"type":"a","details":{"x":"` + strings.Repeat("x", 2000) + `"}}`
	status, body = c.post(one, "application/json")
	e = requireError(t, status, body, http.StatusRequestEntityTooLarge, "")
	assert.Contains(t, e.Error, advice)

	lines := strings.Repeat("{\"type\":\"a\"}\n", 100)
	status, body = c.post(lines, "application/x-ndjson")
	e = requireError(t, status, body, http.StatusRequestEntityTooLarge, "")
	assert.Contains(t, e.Error, advice)

	require.Equal(t, 1, count(t, s))
}

func TestPostTooMany(t *testing.T) {
	if testing.Short() {
		t.Skip("posts more than MaxBatch activities")
	}
	s, c := setup(t)
	const line = "{\"type\":\"a\"}\n"
	status, body := c.post(strings.Repeat(line, activitystore.MaxBatch+1), "application/x-ndjson")
	e := requireError(t, status, body, http.StatusRequestEntityTooLarge, "")
	require.NotNil(t, e.Line)
	require.Equal(t, activitystore.MaxBatch+1, *e.Line)
	assert.Contains(t, e.Error, "must be split into several requests")
	require.Equal(t, 0, count(t, s))
}

func TestAppendedMetricsCount(t *testing.T) {
	s, c := setup(t)
	c.postIDs(`[{"type":"a"},{"type":"b"}]`, "application/json")
	c.post(`[{"type":""}]`, "application/json")
	require.Equal(t, 2, count(t, s))
	_, body := c.do(http.MethodGet, "/metrics", "")
	assert.Contains(t, string(body), "activitystore_http_appended_activities_total 2\n")
	assert.Contains(t, string(body), `activitystore_http_append_rejected_requests_total{code="400"} 1`)
}

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"application/x-ndjson":                "application/x-ndjson",
		"Application/X-NDJSON; charset=UTF-8": "application/x-ndjson",
		"application/x-ndjson; charset":       "application/x-ndjson",
		" application/JSONL ;;":               "application/jsonl",
		"application/json":                    "application/json",
		"":                                    "",
	} {
		require.Equal(t, want, mediaType(in), in)
	}
}

// A UTF-8 byte-order mark at the start of the body is skipped.
func TestPostBOM(t *testing.T) {
	s, c := setup(t)
	const bom = "\xef\xbb\xbf"
	require.Len(t, c.postIDs(bom+`{"type":"a"}`, "application/json"), 1)
	require.Len(t, c.postIDs(bom+` [{"type":"a"},{"type":"b"}]`, "application/json"), 2)
	require.Len(t, c.postIDs(bom+"{\"type\":\"a\"}\n{\"type\":\"b\"}\n", "application/x-ndjson"), 2)
	require.Len(t, c.postIDs(bom+"\n{\"type\":\"a\"}\n", "application/x-ndjson"), 1)
	require.Equal(t, 6, count(t, s))

	// Lines are counted as before; a mark alone is an empty body; only the
	// first is skipped.
	status, body := c.post(bom+"{\"type\":\"a\"}\n{\"type\":\"\"}\n", "application/x-ndjson")
	e := requireError(t, status, body, http.StatusBadRequest, "type")
	require.NotNil(t, e.Line)
	require.Equal(t, 2, *e.Line)
	status, body = c.post(bom, "application/json")
	requireError(t, status, body, http.StatusBadRequest, "")
	status, body = c.post(bom+bom+`{"type":"a"}`, "application/json")
	requireError(t, status, body, http.StatusBadRequest, "")
	require.Equal(t, 6, count(t, s))
}

// At most MaxConcurrentPosts POSTs read and store their batch at once; the
// others wait, until their request ends.
func TestPostConcurrencyBounded(t *testing.T) {
	s := openStore(t, nil)
	h := newHandler(s, Options{MaxConcurrentPosts: 1})
	post := func(ctx context.Context, body io.Reader) (*httptest.ResponseRecorder, chan struct{}) {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/activities", body)
		req.Header.Set("Content-Type", "application/x-ndjson")
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.mux.ServeHTTP(w, req)
		}()
		return w, done
	}
	wait := func(done chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the POST is still running after 10s")
		}
	}

	// The first POST holds the only slot while it reads its body.
	pr, pw := io.Pipe()
	w1, done1 := post(t.Context(), pr)
	_, err := pw.Write([]byte("{\"type\":\"a\"}\n")) // returns once the handler read it
	require.NoError(t, err)

	// A second one waits for the slot; its request ends first: a 503, and
	// nothing stored.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	w2, done2 := post(ctx, strings.NewReader(`{"type":"b"}`))
	wait(done2)
	requireError(t, w2.Code, w2.Body.Bytes(), http.StatusServiceUnavailable, "")

	// A third one, with no deadline, goes on once the first is done.
	w3, done3 := post(t.Context(), strings.NewReader(`{"type":"c"}`))
	_, err = pw.Write([]byte("{\"type\":\"a\"}\n"))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	wait(done1)
	require.Equal(t, http.StatusCreated, w1.Code, "%s", w1.Body)
	wait(done3)
	require.Equal(t, http.StatusCreated, w3.Code, "%s", w3.Body)
	require.Equal(t, 3, count(t, s))
	n, err := s.Query().Types("b").Count(t.Context())
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestPostLimitsPerPrincipal checks that one principal's stalled uploads
// neither take every POST slot nor keep theirs: a third is a 429 with
// Retry-After, another principal posts meanwhile, and a body that stops
// arriving ends with a 408 that frees its slot.
func TestPostLimitsPerPrincipal(t *testing.T) {
	s := openStore(t, nil)
	h := newHandler(s, Options{Authenticate: TokenAuth(testTokens), MaxConcurrentPosts: 4})
	h.bodyTimeout = 2 * time.Second
	slots := make(chan struct{}, 8)
	h.onPostSlot = func() { slots <- struct{}{} }
	c := serveHandler(t, h)
	line := `{"type":"a","user_id":"alice"}` + "\n"

	// stalled starts a POST by alice whose body stops after one line.
	stalled := func() chan int {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, err := http.NewRequest(http.MethodPost, c.url+"/v1/activities", pr)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		req.Header.Set("Content-Type", "application/x-ndjson")
		status := make(chan int, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
		_, err = pw.Write([]byte(line))
		require.NoError(t, err)
		return status
	}
	s1, s2 := stalled(), stalled()
	<-slots
	<-slots
	client := &http.Client{Timeout: 30 * time.Second} // a third that waits for a slot fails the test

	req, err := http.NewRequest(http.MethodPost, c.url+"/v1/activities", strings.NewReader(line))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	alice := c.as(aliceToken)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	status, body := c.as(adminToken).post(`{"type":"b","user_id":"bob"}`, "application/json")
	require.Equal(t, http.StatusCreated, status, "%s", body)

	for _, ch := range []chan int{s1, s2} {
		select {
		case code := <-ch:
			require.Equal(t, http.StatusRequestTimeout, code)
		case <-time.After(30 * time.Second):
			t.Fatal("a stalled upload still holds its slot after 30s")
		}
	}
	status, body = alice.post(line, "application/x-ndjson")
	require.Equal(t, http.StatusCreated, status, "%s", body)
	require.Equal(t, 2, count(t, s), "nothing of the stalled uploads is stored")
}

// TestWriteFailed checks that once the disk fails a write of the store's
// log, POSTs are 503s naming the failure, /healthz is a 503, and reads go
// on.
func TestWriteFailed(t *testing.T) {
	var on atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if on.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.EIO
		}
		return nil
	})
	s := openStore(t, &activitystore.Options{FS: errorfs.Wrap(vfs.Default, inj), Logger: quiet{}})
	seed(t, s, act("user.login", "alice", 1))
	c := serve(t, s, Options{})
	on.Store(true)
	status, body := c.post(`{"type":"user.login","user_id":"alice"}`, "application/json")
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	require.Contains(t, string(body), "write to disk failed")
	on.Store(false)
	status, body = c.do(http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	var page struct{ Activities []json.RawMessage }
	c.get("/v1/activities", http.StatusOK, &page)
	require.Len(t, page.Activities, 1)
}

// quiet drops pebble's log lines.
type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// TestBackupEndpoint checks that only an admin may back up, that the body
// is checked, and that the copy opens with the server's activities.
func TestBackupEndpoint(t *testing.T) {
	s := openStore(t, nil)
	seed(t, s, act("user.login", "alice", 1), act("user.login", "bob", 2))
	c := serve(t, s, Options{Authenticate: TokenAuth(testTokens)})
	dir := filepath.Join(t.TempDir(), "copy")
	body := `{"to":` + strconv.Quote(dir) + `}`

	jsonType := []string{"Content-Type", "application/json"}
	status, b := c.as(aliceToken).do(http.MethodPost, "/v1/admin/backup", body, jsonType...)
	require.Equal(t, http.StatusForbidden, status, "%s", b)
	for _, bad := range []string{`{"to":"relative/path"}`, `{}`, `not json`, `{"to":"/x","more":1}`} {
		status, b = c.as(adminToken).do(http.MethodPost, "/v1/admin/backup", bad, jsonType...)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", bad, b)
	}
	// What a web page could send across sites is refused.
	status, b = c.as(adminToken).do(http.MethodPost, "/v1/admin/backup", body, "Content-Type", "text/plain")
	require.Equal(t, http.StatusUnsupportedMediaType, status, "%s", b)
	_, err := os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)

	status, b = c.as(adminToken).do(http.MethodPost, "/v1/admin/backup", body, jsonType...)
	require.Equal(t, http.StatusOK, status, "%s", b)
	require.Contains(t, string(b), `"dir":`)
	copied, err := activitystore.Open(dir, &activitystore.Options{MustExist: true})
	require.NoError(t, err)
	defer copied.Close()
	require.Equal(t, 2, count(t, copied))
	require.NoError(t, copied.Verify(t.Context()))

	status, b = c.as(adminToken).do(http.MethodPost, "/v1/admin/backup", body, jsonType...)
	require.Equal(t, http.StatusConflict, status, "a folder that is not empty: %s", b)
	require.Contains(t, string(b), "not empty")
}
