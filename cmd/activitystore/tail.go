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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
)

func (a *app) tailCommand() *cobra.Command {
	var f filters
	var server, token, output string
	var limit int
	c := &cobra.Command{
		Use:   "tail [filters]",
		Short: "Follow the activities a running server stores",
		Long: `tail prints the activities that match the filters as a running
"activitystore serve" stores them, from now on, until --limit of them have come
or it is interrupted.

A store directory can be open in one process only, and the server has it open:
so tail does not read --dir but follows the server at --server over HTTP (the
Server-Sent Events of GET /v1/tail). Give --token when the server wants one.

When tail falls behind and the server's backlog moves past activities it had
not read, it says so on standard error and goes on with the oldest activity
still kept.

` + filterHelp + `

--output table prints one line per activity with the columns of query;
--output json prints one JSON object per line.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", limit)
			}
			u, err := url.Parse(server)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--server %q: want a URL like http://127.0.0.1:8080", server)
			}
			r, err := f.parse(time.Now())
			if err != nil {
				return err
			}
			params := f.values(r)
			if limit > 0 {
				params.Set("limit", strconv.Itoa(limit))
			}
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/tail"
			u.RawQuery = params.Encode()
			t := &tailer{out: a.stdout, errOut: a.stderr, json: output == "json", limit: limit}
			return t.follow(c.Context(), u.String(), token)
		},
	}
	f.register(c)
	c.Flags().StringVar(&server, "server", "http://127.0.0.1:8080", "the URL of the running server")
	c.Flags().StringVar(&token, "token", "", "the bearer token for the server")
	c.Flags().IntVar(&limit, "limit", 0, "stop after this many activities (0: follow until interrupted)")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

// tailer reads a tail stream and prints its activities.
type tailer struct {
	out, errOut io.Writer
	json        bool
	limit       int
	n           int // activities printed
}

// follow reads the Server-Sent Events of the tail at u until the limit is
// reached, ctx is done (not an error) or the stream fails or ends.
func (t *tailer) follow(ctx context.Context, u, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("tail: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("tail: %s", serverError(resp))
	}
	if !t.json {
		t.row(tableHeader)
	}
	err = readEvents(resp.Body, t.event)
	switch {
	case errors.Is(err, errStop):
		return nil
	case ctx.Err() != nil:
		return nil // interrupted: a normal end
	case err != nil:
		return fmt.Errorf("tail: %w", err)
	case t.limit > 0:
		return fmt.Errorf("tail: the server ended the stream after %d of %d activities", t.n, t.limit)
	default:
		return errors.New("tail: the server ended the stream")
	}
}

// errStop ends the reading of a stream once the limit is reached.
var errStop = errors.New("stop")

// event handles one event of the stream.
func (t *tailer) event(typ, data string) error {
	switch typ {
	case "activity":
		var act activitystore.Activity
		if err := json.Unmarshal([]byte(data), &act); err != nil {
			return fmt.Errorf("an activity the server sent: %w", err)
		}
		if t.json {
			var b bytes.Buffer
			if err := json.Compact(&b, []byte(data)); err != nil {
				return err
			}
			b.WriteByte('\n')
			if _, err := t.out.Write(b.Bytes()); err != nil {
				return err
			}
		} else {
			t.row(tableRow(&act))
		}
		t.n++
		if t.limit > 0 && t.n >= t.limit {
			return errStop
		}
	case "lagged":
		var lag struct {
			Missed int64 `json:"missed"`
		}
		json.Unmarshal([]byte(data), &lag)
		if lag.Missed < 0 {
			fmt.Fprintln(t.errOut, "activitystore: tail fell behind: missed an unknown number of activities; going on with the oldest one kept")
		} else {
			fmt.Fprintf(t.errOut, "activitystore: tail fell behind: missed %d activities; going on with the oldest one kept\n", lag.Missed)
		}
	case "error":
		var e apiError
		if json.Unmarshal([]byte(data), &e) == nil && e.Error != "" {
			return fmt.Errorf("the server: %s", e)
		}
		return fmt.Errorf("the server: %s", oneLineText(data))
	}
	return nil
}

// tailWidths are the widths of the columns of tail's table but the last:
// the rows are printed as they come, so the columns cannot fit the values.
var tailWidths = []int{24, 20, 14, 10, 10, 16}

func (t *tailer) row(cells []string) {
	var b strings.Builder
	for i, c := range cells {
		if i < len(tailWidths) {
			fmt.Fprintf(&b, "%-*s ", tailWidths[i], c)
		} else {
			b.WriteString(c)
		}
	}
	b.WriteByte('\n')
	io.WriteString(t.out, b.String())
}

// readEvents parses a Server-Sent Events stream and calls fn with the type
// ("message" when none is given) and data of each event, until the stream
// ends (nil) or fn returns an error.
func readEvents(r io.Reader, fn func(typ, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	var typ string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				if typ == "" {
					typ = "message"
				}
				if err := fn(typ, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			typ, data = "", data[:0]
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment, such as a keep-alive
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}

// apiError is the body of an HTTP API error.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func (e apiError) String() string {
	if e.Field != "" {
		return e.Field + ": " + e.Error
	}
	return e.Error
}

// serverError describes a failed response from its status and body.
func serverError(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Sprintf("the server answered %s: %s", resp.Status, e)
	}
	if s := oneLineText(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return fmt.Sprintf("the server answered %s: %s", resp.Status, s)
	}
	return "the server answered " + resp.Status
}
