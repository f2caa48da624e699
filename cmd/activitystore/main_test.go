package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// result is what one in-process run of the command printed.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args in-process with stdin.
func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// mustRun runs args and requires success.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := runCmd(t, "", args...)
	require.Equal(t, 0, r.code, "activitystore %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// requireOneLineError checks that r failed with one "activitystore: " line
// on stderr.
func requireOneLineError(t *testing.T, r result, args ...string) {
	t.Helper()
	require.NotEqual(t, 0, r.code, "activitystore %s should fail; stdout: %s", strings.Join(args, " "), r.stdout)
	require.True(t, strings.HasPrefix(r.stderr, "activitystore: "), "stderr of %v: %q", args, r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr of %v: %q", args, r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "stderr of %v: %q", args, r.stderr)
}

// lineJSON is an activity as an import line.
type lineJSON struct {
	Type     string          `json:"type"`
	UserID   string          `json:"user_id,omitempty"`
	Module   string          `json:"module,omitempty"`
	Action   string          `json:"action,omitempty"`
	APICall  string          `json:"apicall,omitempty"`
	Resource string          `json:"resource,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	Time     time.Time       `json:"time"`
}

// generate returns n generated activities over days days up to end.
func generate(n, days int, end time.Time) []lineJSON {
	g := gen.New(gen.Config{N: n, Users: 50, Days: days, End: end})
	var out []lineJSON
	var a activitystore.Activity
	for g.Next(&a) {
		out = append(out, lineJSON{
			Type: a.Type, UserID: a.UserID, Module: a.Module, Action: a.Action, APICall: a.APICall,
			Resource: a.Resource, Details: slices.Clone(a.Details), Time: a.Time.UTC(),
		})
	}
	return out
}

// ndjson encodes acts one per line.
func ndjson(t testing.TB, acts []lineJSON) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, a := range acts {
		require.NoError(t, enc.Encode(a))
	}
	return b.Bytes()
}

// pageOut is the JSON output of query.
type pageOut struct {
	Activities []activitystore.Activity `json:"activities"`
	NextCursor *string                  `json:"next_cursor"`
}

// importFixture is a store in dir with the activities acts.
type importFixture struct {
	dir  string
	acts []lineJSON
	end  time.Time
}

func newImportFixture(t *testing.T, n int) importFixture {
	t.Helper()
	end := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	acts := generate(n, 10, end)
	file := filepath.Join(t.TempDir(), "in.jsonl")
	require.NoError(t, os.WriteFile(file, ndjson(t, acts), 0o644))
	dir := filepath.Join(t.TempDir(), "store")
	r := mustRun(t, "import", "--dir", dir, file)
	assert.Equal(t, fmt.Sprintf("%d lines stored, 0 rejected\n", n), r.stdout)
	assert.Empty(t, r.stderr, "no progress bar when stderr is not a terminal")
	return importFixture{dir, acts, end}
}

func (f importFixture) countWhere(keep func(a lineJSON) bool) int {
	n := 0
	for _, a := range f.acts {
		if keep(a) {
			n++
		}
	}
	return n
}

func TestImportThenReadCommands(t *testing.T) {
	const n = 3000
	f := newImportFixture(t, n)
	dir := f.dir

	t.Run("count", func(t *testing.T) {
		assert.Equal(t, strconv.Itoa(n)+"\n", mustRun(t, "count", "--dir", dir).stdout)
		logins := f.countWhere(func(a lineJSON) bool { return a.Type == "user.login" })
		require.NotZero(t, logins)
		assert.Equal(t, fmt.Sprintln(logins), mustRun(t, "count", "--dir", dir, "--type", "user.login").stdout)
		two := f.countWhere(func(a lineJSON) bool { return a.Type == "user.login" || a.Type == "model.deploy" })
		assert.Equal(t, fmt.Sprintln(two), mustRun(t, "count", "--dir", dir, "--type", "user.login", "--type", "model.deploy").stdout)
		system := f.countWhere(func(a lineJSON) bool { return a.UserID == "" })
		require.NotZero(t, system)
		assert.Equal(t, fmt.Sprintln(system), mustRun(t, "count", "--dir", dir, "--system").stdout)
		u := f.acts[0].UserID
		if u == "" {
			u = f.acts[1].UserID
		}
		mine := f.countWhere(func(a lineJSON) bool { return a.UserID == u && a.Module == "auth" })
		assert.Equal(t, fmt.Sprintln(mine), mustRun(t, "count", "--dir", dir, "--user", u, "--module", "auth").stdout)
		since, until := f.end.Add(-72*time.Hour), f.end.Add(-24*time.Hour)
		inRange := f.countWhere(func(a lineJSON) bool { return !a.Time.Before(since) && a.Time.Before(until) })
		assert.Equal(t, fmt.Sprintln(inRange), mustRun(t, "count", "--dir", dir,
			"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)).stdout)
		// A relative --since reaching back past all the data counts all of it.
		assert.Equal(t, fmt.Sprintln(n), mustRun(t, "count", "--dir", dir, "--since", "30d").stdout)
	})

	var walked []activitystore.ID
	t.Run("query json with a cursor walk", func(t *testing.T) {
		seen := map[activitystore.ID]bool{}
		cursor := ""
		for page := 0; ; page++ {
			require.Less(t, page, 10, "the walk does not end")
			args := []string{"query", "--dir", dir, "--output", "json", "--limit", "700"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			r := mustRun(t, args...)
			var p pageOut
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &p), r.stdout)
			require.NotNil(t, p.NextCursor, "next_cursor is always present")
			for i, a := range p.Activities {
				require.False(t, seen[a.ID], "activity %s twice", a.ID)
				seen[a.ID] = true
				walked = append(walked, a.ID)
				require.NotEmpty(t, a.Type)
				if i > 0 {
					require.True(t, a.ID.Compare(p.Activities[i-1].ID) < 0, "newest first")
				}
			}
			if *p.NextCursor == "" {
				assert.Empty(t, r.stderr)
				break
			}
			assert.Equal(t, "next cursor: "+*p.NextCursor+"\n", r.stderr)
			cursor = *p.NextCursor
		}
		assert.Len(t, seen, n)
	})

	t.Run("query table", func(t *testing.T) {
		r := mustRun(t, "query", "--dir", dir, "--limit", "5", "--type", "model.deploy")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 6, r.stdout)
		assert.Equal(t, []string{"TIME", "TYPE", "USER", "MODULE", "ACTION", "RESOURCE", "ID"}, strings.Fields(lines[0]))
		for _, l := range lines[1:] {
			cells := strings.Fields(l)
			require.Len(t, cells, 7, l)
			_, err := time.Parse(time.RFC3339, cells[0])
			assert.NoError(t, err)
			assert.Equal(t, "model.deploy", cells[1])
			_, err = activitystore.ParseID(cells[6])
			assert.NoError(t, err)
		}
		assert.True(t, strings.HasPrefix(r.stderr, "next cursor: "), r.stderr)

		// Skip passes over matches: the second row is the first after --skip 1.
		r2 := mustRun(t, "query", "--dir", dir, "--limit", "1", "--skip", "1", "--type", "model.deploy")
		assert.Equal(t, strings.Fields(lines[2]), strings.Fields(strings.Split(r2.stdout, "\n")[1]))

		// System events show "-" as their user.
		r3 := mustRun(t, "query", "--dir", dir, "--limit", "3", "--system")
		for _, l := range strings.Split(strings.TrimSpace(r3.stdout), "\n")[1:] {
			assert.Equal(t, "-", strings.Fields(l)[2], l)
		}
	})

	t.Run("timeline", func(t *testing.T) {
		r := mustRun(t, "timeline", "--dir", dir, "--bucket", "1d")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.GreaterOrEqual(t, len(lines), 10)
		require.LessOrEqual(t, len(lines), 12)
		total, longest := 0, 0
		for _, l := range lines {
			fields := strings.Fields(l)
			require.GreaterOrEqual(t, len(fields), 2, l)
			_, err := time.Parse(time.DateOnly, fields[0])
			require.NoError(t, err, l)
			c, err := strconv.Atoi(fields[1])
			require.NoError(t, err, l)
			total += c
			bar := 0
			if len(fields) == 3 {
				require.Equal(t, strings.Repeat("█", utf8.RuneCountInString(fields[2])), fields[2])
				bar = utf8.RuneCountInString(fields[2])
			}
			assert.Equal(t, c > 0, bar > 0, "a bar for each non-empty bucket: %q", l)
			assert.LessOrEqual(t, bar, 50)
			longest = max(longest, bar)
		}
		assert.Equal(t, n, total)
		assert.Equal(t, 50, longest, "the largest bucket fills --width")

		// Hours, between two times: one line per hour, bars scaled to --width.
		until := f.end.Truncate(time.Hour)
		r = mustRun(t, "timeline", "--dir", dir, "--bucket", "1h", "--width", "10",
			"--since", until.Add(-24*time.Hour).Format(time.RFC3339), "--until", until.Format(time.RFC3339))
		lines = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 24)
		assert.True(t, strings.HasPrefix(lines[0], until.Add(-24*time.Hour).Format("2006-01-02 15:04")), lines[0])
		for _, l := range lines {
			assert.LessOrEqual(t, strings.Count(l, "█"), 10)
		}
	})

	t.Run("export", func(t *testing.T) {
		r := mustRun(t, "export", "--dir", dir)
		var ids []activitystore.ID
		sc := bufio.NewScanner(strings.NewReader(r.stdout))
		for sc.Scan() {
			var a activitystore.Activity
			require.NoError(t, json.Unmarshal(sc.Bytes(), &a))
			ids = append(ids, a.ID)
		}
		assert.Equal(t, walked, ids, "export writes every activity, newest first")

		r = mustRun(t, "export", "--dir", dir, "--limit", "7")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 7)
		var a activitystore.Activity
		require.NoError(t, json.Unmarshal([]byte(lines[6]), &a))
		assert.Equal(t, walked[6], a.ID)

		out := filepath.Join(t.TempDir(), "out.ndjson")
		r = mustRun(t, "export", "--dir", dir, "--type", "user.login", "--out", out)
		assert.Empty(t, r.stdout)
		logins := f.countWhere(func(a lineJSON) bool { return a.Type == "user.login" })
		assert.Equal(t, fmt.Sprintf("exported %d activities to %s\n", logins, out), r.stderr)

		// What export writes, import reads.
		dir2 := filepath.Join(t.TempDir(), "store2")
		r = mustRun(t, "import", "--dir", dir2, out)
		assert.Equal(t, fmt.Sprintf("%d lines stored, 0 rejected\n", logins), r.stdout)
		assert.Equal(t, fmt.Sprintln(logins), mustRun(t, "count", "--dir", dir2, "--type", "user.login").stdout)
	})

	t.Run("stats", func(t *testing.T) {
		r := mustRun(t, "stats", "--dir", dir)
		assert.Regexp(t, `(?m)^activities +3000$`, r.stdout)
		assert.Regexp(t, `(?m)^disk bytes +\d+ +\(`, r.stdout)
		var st map[string]any
		r = mustRun(t, "stats", "--dir", dir, "--output", "json")
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
		assert.EqualValues(t, n, st["activities"])
		assert.Contains(t, st, "index_bytes_by_field")
		// import and every command leave the store sealed: this Open read
		// no record and holds no segment in memory.
		assert.NotZero(t, st["segments"])
		assert.Equal(t, st["segments"], st["sealed_segments"])
		assert.EqualValues(t, 0, st["open_segments"])
		assert.EqualValues(t, 0, st["rebuilt_activities"])
	})

	t.Run("compact then verify", func(t *testing.T) {
		r := mustRun(t, "compact", "--dir", dir)
		assert.Regexp(t, `^archives: 0 -> [1-9]\d*, archived activities: 0 -> [1-9]\d* of 3000\n$`, r.stdout)
		var st statsJSON
		require.NoError(t, json.Unmarshal([]byte(mustRun(t, "stats", "--dir", dir, "-o", "json").stdout), &st))
		assert.Positive(t, st.Archives)
		assert.Positive(t, st.ArchivedActivities)
		assert.Equal(t, fmt.Sprintln(n), mustRun(t, "count", "--dir", dir).stdout, "archived activities still count")
		assert.Equal(t, "ok\n", mustRun(t, "verify", "--dir", dir).stdout)

		// With --cold-after 1h, every window that ended an hour ago goes.
		r = mustRun(t, "compact", "--dir", dir, "--cold-after", "1h")
		var st2 statsJSON
		require.NoError(t, json.Unmarshal([]byte(mustRun(t, "stats", "--dir", dir, "-o", "json").stdout), &st2))
		assert.Greater(t, st2.ArchivedActivities, st.ArchivedActivities, r.stdout)
		assert.Equal(t, "ok\n", mustRun(t, "verify", "--dir", dir).stdout)
	})
}

func TestVerifyReportsProblems(t *testing.T) {
	f := newImportFixture(t, 500)
	mustRun(t, "compact", "--dir", f.dir)
	files, err := filepath.Glob(filepath.Join(f.dir, "archive", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	for i := len(b) / 4; i < len(b)/2; i++ {
		b[i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(files[0], b, 0o644))

	r := runCmd(t, "", "verify", "--dir", f.dir)
	requireOneLineError(t, r)
	assert.Regexp(t, `^activitystore: verify: \d+ problems\n$`, r.stderr)
	assert.NotEmpty(t, r.stdout)
	assert.NotContains(t, r.stdout, "ok\n")
	assert.Contains(t, r.stdout, filepath.Base(files[0]), "the problem names the file")
}

func TestImportRejectsBadLines(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	good := func(i int) string {
		return fmt.Sprintf(`{"type":"test.good","user_id":"u-%d","time":%q}`, i%7, now.Add(-time.Duration(i)*time.Minute).Format(time.RFC3339))
	}
	lines := []string{
		good(1),
		`{"type":""}`,                // 2: no type
		good(3),                      // 3
		`not json`,                   // 4
		``,                           // 5: blank, skipped
		`{"type":"x","details":[1]}`, // 6: details not an object
		good(7),                      // 7
		`{"type":"x","time":"2999-01-01T00:00:00Z"}`,  // 8: far future
		`{"type":"x"} {"type":"y"}`,                   // 9: two objects
		`{"type":12}`,                                 // 10: type not a string
		`{"type":"x","id":"not-an-id"}`,               // 11
		good(12),                                      // 12
		`{"type":"` + strings.Repeat("t", 300) + `"}`, // 13: type too long
		`[{"type":"x"}]`,                              // 14: an array
		`{"type":"x"`,                                 // 15: cut short
		good(16),                                      // 16
	}
	file := filepath.Join(t.TempDir(), "mixed.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644))
	dir := filepath.Join(t.TempDir(), "store")

	// Batches of 3 put refused activities amid good ones: each good one is
	// stored all the same.
	r := runCmd(t, "", "import", "--dir", dir, "--batch", "3", file)
	requireOneLineError(t, r)
	assert.Equal(t, "activitystore: import "+file+": 10 of 15 lines rejected\n", r.stderr)
	out := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, out, 11, r.stdout)
	assert.Equal(t, "5 lines stored, 10 rejected", out[0])
	var nums []int
	for _, l := range out[1:] {
		var num int
		_, err := fmt.Sscanf(l, "line %d:", &num)
		require.NoError(t, err, l)
		nums = append(nums, num)
	}
	assert.Equal(t, []int{2, 4, 6, 8, 9, 10, 11, 13, 14, 15}, nums)
	assert.Equal(t, "line 2: type is required", out[1])
	assert.Equal(t, "line 6: details must be a JSON object, not [1]", out[3])
	assert.Contains(t, out[4], "line 8: time ")
	assert.Contains(t, out[4], "future")
	assert.Contains(t, out[8], "line 13: type is 300 bytes")
	assert.Equal(t, "5\n", mustRun(t, "count", "--dir", dir).stdout)
	assert.Equal(t, "5\n", mustRun(t, "count", "--dir", dir, "--type", "test.good").stdout)
	assert.Equal(t, "ok\n", mustRun(t, "verify", "--dir", dir).stdout)
}

// TestImportRejectsUnknownFields: a misspelt field is refused, not dropped.
func TestImportRejectsUnknownFields(t *testing.T) {
	file := filepath.Join(t.TempDir(), "typo.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(`{"type":"x","modul":"auth"}`+"\n"+`{"type":"x","module":"auth"}`+"\n"), 0o644))
	dir := filepath.Join(t.TempDir(), "store")
	r := runCmd(t, "", "import", "--dir", dir, file)
	requireOneLineError(t, r)
	assert.Contains(t, r.stdout, "line 1: modul is not a field of an activity")
	assert.Equal(t, "1\n", mustRun(t, "count", "--dir", dir).stdout)
}

func TestImportListsTwentyRejections(t *testing.T) {
	var b strings.Builder
	for i := 1; i <= 60; i++ {
		if i%2 == 0 {
			b.WriteString(`{"type":"ok"}` + "\n")
		} else {
			b.WriteString(`{"user_id":"no type"}` + "\n")
		}
	}
	dir := filepath.Join(t.TempDir(), "store")
	r := runCmd(t, b.String(), "import", "--dir", dir) // no file: standard input
	requireOneLineError(t, r)
	out := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, out, 22)
	assert.Equal(t, "30 lines stored, 30 rejected", out[0])
	assert.Equal(t, "line 1: type is required", out[1])
	assert.Equal(t, "line 39: type is required", out[20])
	assert.Equal(t, "... and 10 more", out[21])
	assert.Equal(t, "30\n", mustRun(t, "count", "--dir", dir).stdout)
}

func TestImportStdinAndProgress(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	in := `{"type":"a"}` + "\r\n" + `{"type":"b","created_at":"2026-01-02T03:04:05Z"}` // CRLF, no final newline
	r := runCmd(t, in, "import", "--dir", dir, "-", "--progress")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "2 lines stored, 0 rejected\n", r.stdout)
	assert.NotEmpty(t, r.stderr, "--progress draws a bar on stderr")
	r = mustRun(t, "query", "--dir", dir, "--type", "b", "-o", "json")
	var p pageOut
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &p))
	require.Len(t, p.Activities, 1)
	assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), p.Activities[0].Time)

	// An empty input stores nothing and succeeds.
	r = runCmd(t, "", "import", "--dir", dir, "--progress=false")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, "0 lines stored, 0 rejected\n", r.stdout)
	assert.Empty(t, r.stderr)
}

func TestBadInputFailsWithOneLine(t *testing.T) {
	f := newImportFixture(t, 100)
	dir := f.dir
	tmp := t.TempDir()
	badTokens := filepath.Join(tmp, "tokens")
	require.NoError(t, os.WriteFile(badTokens, []byte("# tokens\nt1 alice admin\n\nt2 bob root\n"), 0o600))

	cases := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"query", "--output", "xml"}, `--output "xml"`},
		{[]string{"query", "--since", "yesterday"}, `--since "yesterday"`},
		{[]string{"query", "--until", "2026-13-01"}, `--until "2026-13-01"`},
		{[]string{"query", "--since", "-2h"}, `--since "-2h"`},
		{[]string{"query", "--limit", "abc"}, `"abc"`},
		{[]string{"query", "--limit", "0"}, "--limit 0"},
		{[]string{"query", "--limit", "20000"}, "--limit 20000"},
		{[]string{"query", "--skip", "-1"}, "--skip -1"},
		{[]string{"query", "--cursor", "garbage"}, "cursor"},
		{[]string{"query", "extra-arg"}, "extra-arg"},
		{[]string{"count", "--since", "1h", "--until", "2h"}, "before --since"},
		{[]string{"count", "--nope"}, "--nope"},
		{[]string{"timeline", "--bucket", "0"}, `--bucket "0"`},
		{[]string{"timeline", "--bucket", "1x"}, `--bucket "1x"`},
		{[]string{"timeline", "--width", "0"}, "--width 0"},
		{[]string{"timeline", "--bucket", "1ns"}, "bucket"},
		{[]string{"timeline", "--bucket", "1.5d"}, `--bucket "1.5d"`},
		{[]string{"timeline", "--bucket", "0d"}, `--bucket "0d"`},
		{[]string{"stats", "--output", "yaml"}, `--output "yaml"`},
		{[]string{"export", "--out", filepath.Join(tmp, "no", "such", "dir.ndjson")}, "no such file"},
		{[]string{"export", "--limit", "-1"}, "--limit -1"},
		{[]string{"import", filepath.Join(tmp, "missing.jsonl")}, "missing.jsonl"},
		{[]string{"import", "--batch", "0"}, "--batch 0"},
		{[]string{"import", "a", "b"}, "accepts at most 1 arg"},
		{[]string{"compact", "--cold-after", "soon"}, `--cold-after "soon"`},
		{[]string{"tail", "--server", "ftp://example.com"}, "--server"},
		{[]string{"tail", "--output", "csv"}, `--output "csv"`},
		{[]string{"tail", "--limit", "-3"}, "--limit -3"},
		{[]string{"serve", "--tokens", filepath.Join(tmp, "missing-tokens")}, "missing-tokens"},
		{[]string{"serve", "--tokens", badTokens}, badTokens + ":4:"},
		{[]string{"serve", "--addr", "127.0.0.1:99999"}, "99999"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		args := append(c.args, "--dir", dir)
		r := runCmd(t, "", args...)
		requireOneLineError(t, r, args...)
		assert.Contains(t, r.stderr, c.want, "activitystore %s", strings.Join(args, " "))
	}

	// A directory with no store is not made by the commands that read.
	missing := filepath.Join(tmp, "nothing-here")
	for _, cmd := range []string{"query", "count", "timeline", "export", "stats", "compact", "verify"} {
		r := runCmd(t, "", cmd, "--dir", missing)
		requireOneLineError(t, r, cmd)
		assert.Contains(t, r.stderr, "no store in "+missing)
		assert.NoDirExists(t, missing)
	}
	// Nor is one made in a folder that exists but holds something else.
	other := filepath.Join(tmp, "not-a-store")
	require.NoError(t, os.MkdirAll(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644))
	for _, cmd := range []string{"query", "count", "timeline", "export", "stats", "compact", "verify"} {
		r := runCmd(t, "", cmd, "--dir", other)
		requireOneLineError(t, r, cmd)
		assert.Contains(t, r.stderr, "no store in "+other, cmd)
		ents, err := os.ReadDir(other)
		require.NoError(t, err)
		require.Len(t, ents, 1, "%s left the folder as it was", cmd)
	}

	// A directory another process has open is locked.
	s, err := activitystore.Open(dir, nil)
	require.NoError(t, err)
	for _, cmd := range []string{"query", "count", "import", "serve", "stats", "verify"} {
		r := runCmd(t, "", cmd, "--dir", dir)
		requireOneLineError(t, r, cmd)
		assert.Contains(t, r.stderr, "locked by another process", cmd)
	}
	require.NoError(t, s.Close())
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-02T03:04:05Z":        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02T03:04:05.5+02:00": time.Date(2026, 1, 2, 1, 4, 5, 5e8, time.UTC),
		"2026-01-02":                  time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"24h":                         now.Add(-24 * time.Hour),
		"90m":                         now.Add(-90 * time.Minute),
		"7d":                          now.Add(-7 * 24 * time.Hour),
		"1d12h":                       now.Add(-36 * time.Hour),
		"1.5d":                        now.Add(-36 * time.Hour),
		"0s":                          now,
	} {
		got, err := parseTime(in, now)
		require.NoError(t, err, in)
		assert.True(t, want.Equal(got), "%s: got %s, want %s", in, got, want)
	}
	for _, in := range []string{"", "yesterday", "-1h", "d", "1dd", "-1d", "1d-1h", "99999999d", "2026-02-30", "12", "NaNd", "Infd"} {
		_, err := parseTime(in, now)
		assert.Error(t, err, "%q", in)
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, fmt.Sprintf("tokens-%d", len(s)))
		require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
		return p
	}
	p := write("# the tokens\n\n  s3cret alice admin \nabc\tbob\n# end\n")
	tokens, err := loadTokens(p)
	require.NoError(t, err)
	assert.Len(t, tokens, 2)
	assert.Equal(t, "alice", tokens["s3cret"].UserID)
	assert.True(t, tokens["s3cret"].Admin)
	assert.Equal(t, "bob", tokens["abc"].UserID)
	assert.False(t, tokens["abc"].Admin)

	for content, want := range map[string]string{
		"t1 alice\nlonely\n":         ":2: want TOKEN USER_ID [admin], got 1 fields",
		"t1 alice admin extra\n":     ":1: want TOKEN USER_ID [admin], got 4 fields",
		"t1 alice\n\nt2 bob Admin\n": `:3: third field "Admin"`,
		"t1 alice\nt1 bob\n":         ":2: the token is already on line 1",
		"# only comments\n\n":        "no tokens",
	} {
		p := write(content)
		_, err := loadTokens(p)
		require.Error(t, err, content)
		assert.Contains(t, err.Error(), p)
		assert.Contains(t, err.Error(), want)
	}
}

func TestWriteTimeline(t *testing.T) {
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	require.NoError(t, writeTimeline(&b, []activitystore.Bucket{
		{Start: day, Count: 10}, {Start: day.Add(time.Hour), Count: 0},
		{Start: day.Add(2 * time.Hour), Count: 1}, {Start: day.Add(3 * time.Hour), Count: 5},
	}, time.Hour, 20))
	assert.Equal(t, ""+
		"2026-03-01 00:00  10  ████████████████████\n"+
		"2026-03-01 01:00   0\n"+
		"2026-03-01 02:00   1  ██\n"+
		"2026-03-01 03:00   5  ██████████\n", b.String())

	b.Reset()
	require.NoError(t, writeTimeline(&b, []activitystore.Bucket{{Start: day, Count: 3}}, 24*time.Hour, 4))
	assert.Equal(t, "2026-03-01  3  ████\n", b.String())
	b.Reset()
	require.NoError(t, writeTimeline(&b, nil, time.Hour, 4))
	assert.Empty(t, b.String())
}

func TestErrorLine(t *testing.T) {
	assert.Equal(t, "activitystore: open d: directory is locked by another store",
		errorLine(fmt.Errorf("open d: %w", activitystore.ErrLocked)))
	assert.Equal(t, "activitystore: a; b",
		errorLine(errors.New("a\n\nb\n")))
}

// serveStderr is the standard error of an in-process serve: it keeps all
// that serve writes, from any goroutine, and never blocks it. The first
// complete "listening on URL" line sends URL on listening.
type serveStderr struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	found     bool
	listening chan string // buffered: gets the URL once
}

func newServeStderr() *serveStderr {
	return &serveStderr{listening: make(chan string, 1)}
}

func (e *serveStderr) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf.Write(p)
	if !e.found {
		for l := range strings.Lines(e.buf.String()) {
			l, complete := strings.CutSuffix(l, "\n")
			if u, ok := strings.CutPrefix(l, "listening on "); ok && complete {
				e.found = true
				e.listening <- u
				break
			}
		}
	}
	return len(p), nil
}

func (e *serveStderr) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.String()
}

// startServe runs serve in-process on a free port and returns its base URL
// and a function that stops it and returns its exit status.
func startServe(t *testing.T, args ...string) (string, func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out bytes.Buffer
	errOut := newServeStderr()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), strings.NewReader(""), &out, errOut)
	}()
	var base string
	select {
	case base = <-errOut.listening:
	case code := <-done:
		done <- code
		t.Fatalf("serve ended (exit %d) before listening: %s", code, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not print its address: %s", errOut.String())
	}
	stop := func() result {
		cancel()
		var code int
		select {
		case code = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not stop: %s", errOut.String())
		}
		return result{code, out.String(), errOut.String()}
	}
	return base, stop
}

// TestServeStderrNeverBlocks: whatever serve writes, and from however many
// goroutines, the test's stderr takes it all without a reader, and finds the
// address line even when it comes in pieces after many others.
func TestServeStderrNeverBlocks(t *testing.T) {
	e := newServeStderr()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				fmt.Fprintf(e, "goroutine %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	select {
	case u := <-e.listening:
		t.Fatalf("no address yet, got %q", u)
	default:
	}
	fmt.Fprint(e, "listening on http://127.0.0.1")
	select {
	case u := <-e.listening:
		t.Fatalf("the line is not complete, got %q", u)
	default:
	}
	fmt.Fprint(e, ":1234\nlistening on http://elsewhere\n")
	assert.Equal(t, "http://127.0.0.1:1234", <-e.listening)
	select {
	case u := <-e.listening:
		t.Fatalf("the address is sent once, got %q", u)
	default:
	}
	assert.Equal(t, 4002, strings.Count(e.String(), "\n"))
}

func TestServeInProcessWithTokens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("# who\nadm1n alice admin\nu5er bob\n"), 0o600))
	base, stop := startServe(t, "--dir", dir, "--tokens", tokens)
	require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
	waitHealthy(t, base)

	getBody := func(path, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	get := func(path, token string) int {
		t.Helper()
		code, _ := getBody(path, token)
		return code
	}
	assert.Equal(t, http.StatusUnauthorized, get("/v1/count", ""))
	assert.Equal(t, http.StatusUnauthorized, get("/v1/count", "wrong"))
	assert.Equal(t, http.StatusUnauthorized, get("/v1/activities", "wrong"))
	assert.Equal(t, http.StatusOK, get("/v1/count", "adm1n"))
	assert.Equal(t, http.StatusOK, get("/v1/count?user=bob", "u5er"))

	// The admin stores activities of several users.
	var acts []lineJSON
	for i, u := range []string{"alice", "bob", "carol", "bob", "", "alice", "bob"} {
		acts = append(acts, lineJSON{Type: "cli.access", UserID: u, Time: time.Now().UTC().Add(-time.Duration(i) * time.Second)})
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/activities", bytes.NewReader(ndjson(t, acts)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer adm1n")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))

	activities := func(path, token string) []activitystore.Activity {
		t.Helper()
		code, body := getBody(path, token)
		require.Equal(t, http.StatusOK, code, "GET %s: %s", path, body)
		var p pageOut
		require.NoError(t, json.Unmarshal(body, &p), string(body))
		return p.Activities
	}
	// The admin sees everyone's; a user sees only its own, with or without
	// naming itself, and asking for another user is refused, not filtered.
	assert.Len(t, activities("/v1/activities", "adm1n"), len(acts))
	for _, path := range []string{"/v1/activities", "/v1/activities?user=bob"} {
		mine := activities(path, "u5er")
		assert.Len(t, mine, 3, path)
		for _, a := range mine {
			assert.Equal(t, "bob", a.UserID, path)
		}
	}
	for _, path := range []string{"/v1/activities?user=other", "/v1/activities?user=alice", "/v1/activities?user=bob&user=carol", "/v1/count?user=alice"} {
		code, body := getBody(path, "u5er")
		assert.Equal(t, http.StatusForbidden, code, "GET %s: %s", path, body)
	}

	// While serve runs, the directory is locked for the other commands.
	r := runCmd(t, "", "count", "--dir", dir)
	requireOneLineError(t, r)
	assert.Contains(t, r.stderr, "locked by another process")

	res := stop()
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stderr, "shutting down")
	// The store is closed: it opens again.
	assert.Equal(t, fmt.Sprintln(len(acts)), mustRun(t, "count", "--dir", dir).stdout)
}

// waitHealthy polls /healthz until it answers 200, with a deadline.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "the server is not healthy: %v", err)
		<-tick.C
	}
}

func TestImportLongLines(t *testing.T) {
	long := `{"type":"x","details":{"pad":"` + strings.Repeat("p", maxLineBytes) + `"}}`
	in := `{"type":"a"}` + "\n" + long + "\n" + `{"type":"b"}` + "\n" + long // the last without a line break
	dir := filepath.Join(t.TempDir(), "store")
	r := runCmd(t, in, "import", "--dir", dir)
	requireOneLineError(t, r)
	assert.Equal(t, fmt.Sprintf("2 lines stored, 2 rejected\nline 2: longer than %d bytes\nline 4: longer than %[1]d bytes\n", maxLineBytes), r.stdout)
	assert.Equal(t, "2\n", mustRun(t, "count", "--dir", dir).stdout)
}

// zeros is an endless line of zero bytes, as /dev/zero gives, that calls
// stop once it has given after bytes; past limit it ends, so that an
// importer that does not stop still returns.
// A read left running by a stopped import may still be in Read when the
// test looks at given.
type zeros struct {
	given        atomic.Int64
	after, limit int64
	stop         func()
}

func (z *zeros) Read(p []byte) (int, error) {
	given := z.given.Load()
	if given >= z.limit {
		return 0, io.EOF
	}
	if given >= z.after {
		z.stop()
	}
	clear(p)
	z.given.Add(int64(len(p)))
	return len(p), nil
}

// TestImportStopsOnSignal checks that an import stops when its context ends
// (the first SIGINT or SIGTERM), within an over-long line and within a read
// that waits for input.
func TestImportStopsOnSignal(t *testing.T) {
	s, err := activitystore.Open(t.TempDir(), nil)
	require.NoError(t, err)
	defer s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	z := &zeros{after: 4 << 20, limit: 1 << 30, stop: cancel}
	imp := &importer{s: s, batchSize: 1000}
	err = imp.run(ctx, z)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, z.given.Load(), int64(8<<20), "stopped within the line, soon after the signal")

	ctx, cancel = context.WithCancel(context.Background())
	pr, pw := io.Pipe() // a reader that waits: nothing is ever written
	defer pw.Close()
	done := make(chan error, 1)
	imp = &importer{s: s, batchSize: 1000}
	go func() { done <- imp.run(ctx, pr) }()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestImportKeepsOnlyTheListedRejections: however many lines are rejected,
// and in whatever order Append finds them, the importer keeps a count and
// the listRejected lowest line numbers, and the summary is as before.
func TestImportKeepsOnlyTheListedRejections(t *testing.T) {
	const n = 10_000
	imp := &importer{}
	// Decode errors in line order, with the batch's Append errors after them.
	for batch := 0; batch < n; batch += 100 {
		for i := batch + 1; i <= batch+100; i += 2 {
			imp.reject(i, fmt.Sprintf("decode %d", i))
		}
		for i := batch + 100; i > batch; i -= 2 {
			imp.reject(i, fmt.Sprintf("append %d", i))
		}
		require.LessOrEqual(t, len(imp.rejected), listRejected, "memory is bounded")
	}
	assert.Equal(t, n, imp.nRejected)
	var b strings.Builder
	imp.summary(&b)
	want := []string{fmt.Sprintf("0 lines stored, %d rejected", n)}
	for i := 1; i <= listRejected; i++ {
		kind := "decode"
		if i%2 == 0 {
			kind = "append"
		}
		want = append(want, fmt.Sprintf("line %d: %s %d", i, kind, i))
	}
	want = append(want, fmt.Sprintf("... and %d more", n-listRejected))
	assert.Equal(t, strings.Join(want, "\n")+"\n", b.String())

	// Exactly listRejected rejections: no "more" line.
	imp = &importer{}
	for i := listRejected; i >= 1; i-- {
		imp.reject(i, "r")
	}
	b.Reset()
	imp.summary(&b)
	assert.Equal(t, listRejected+1, strings.Count(b.String(), "\n"), b.String())
	assert.True(t, strings.HasPrefix(b.String(), "0 lines stored, 20 rejected\nline 1: r\nline 2: r\n"), b.String())
	assert.NotContains(t, b.String(), "more")
}

// TestImportSkipsByteOrderMark: a UTF-8 BOM at the start of the input is not
// part of line 1; anywhere else it is.
func TestImportSkipsByteOrderMark(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	in := "\xef\xbb\xbf" + `{"type":"a"}` + "\n" + `{"type":"b"}` + "\n"
	r := runCmd(t, in, "import", "--dir", dir)
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Equal(t, "2 lines stored, 0 rejected\n", r.stdout)
	assert.Equal(t, "1\n", mustRun(t, "count", "--dir", dir, "--type", "a").stdout)

	// From a file, with the BOM alone on the first line, and a BOM that is
	// not at the start.
	file := filepath.Join(t.TempDir(), "bom.jsonl")
	require.NoError(t, os.WriteFile(file, []byte("\xef\xbb\xbf\n"+`{"type":"c"}`+"\n\xef\xbb\xbf"+`{"type":"d"}`+"\n"), 0o644))
	r = runCmd(t, "", "import", "--dir", dir, file)
	requireOneLineError(t, r)
	assert.Equal(t, "1 lines stored, 1 rejected\nline 3: not a JSON object\n", r.stdout)

	// Inputs shorter than a BOM, or starting like one.
	for in, want := range map[string]string{
		"":             "0 lines stored, 0 rejected\n",
		"\xef\xbb\xbf": "0 lines stored, 0 rejected\n",
		"\xef\xbb":     "0 lines stored, 1 rejected\nline 1: not a JSON object\n",
		"\xef{}":       "0 lines stored, 1 rejected\nline 1: not a JSON object\n",
		"{}":           "0 lines stored, 1 rejected\nline 1: type is required\n",
	} {
		r := runCmd(t, in, "import", "--dir", dir)
		assert.Equal(t, want, r.stdout, "%q", in)
	}
}

// TestParseBucket: the timeline takes the buckets the HTTP API takes, no
// more and no less.
func TestParseBucket(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1h":      time.Hour,
		"15m":     15 * time.Minute,
		"90s":     90 * time.Second,
		"1.5h":    90 * time.Minute,
		"1h30m":   90 * time.Minute,
		"1ns":     1,
		"1d":      24 * time.Hour,
		"7d":      7 * 24 * time.Hour,
		"+2d":     48 * time.Hour,
		"106751d": 106751 * 24 * time.Hour,
	} {
		got, err := parseBucket(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "0s", "-1h", "0d", "-1d", "1.5d", "0.5d", "1d12h", "d", "1dd", "1x", "106752d", "9999999999999999999d", " 1d", "1D"} {
		_, err := parseBucket(in)
		require.Error(t, err, "%q", in)
		assert.Equal(t, fmt.Sprintf("--bucket %q is not a positive duration such as 90s, 15m, 1h or 7d", in), err.Error())
	}
}

// TestServeTimeouts: serve bounds reads, writes and idle connections.
func TestServeTimeouts(t *testing.T) {
	srv := (&app{stderr: io.Discard}).newServer(http.NotFoundHandler())
	assert.Equal(t, 10*time.Second, srv.ReadHeaderTimeout)
	assert.Equal(t, 10*time.Minute, srv.ReadTimeout)
	assert.Equal(t, 2*time.Minute, srv.WriteTimeout)
	assert.Equal(t, 2*time.Minute, srv.IdleTimeout)
}
