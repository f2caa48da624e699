package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"encoding/json"

	"github.com/activitystore/activitystore"
)

// Query is a query built like activitystore.Query: filters on the values of
// a field are ORed, different fields ANDed; Since is inclusive, Until
// exclusive. The server checks it and answers a bad one with a
// *activitystore.QueryError.
type Query struct {
	c     *Client
	v     url.Values
	limit int
	skip  int
}

// Query starts a query of every activity, newest first.
func (c *Client) Query() *Query { return &Query{c: c, v: url.Values{}} }

func (q *Query) add(name string, vs []string) *Query {
	for _, v := range vs {
		q.v.Add(name, v)
	}
	return q
}

// Types keeps the activities of any of the types.
func (q *Query) Types(types ...string) *Query { return q.add("type", types) }

// Users keeps the activities of any of the users.
func (q *Query) Users(users ...string) *Query { return q.add("user", users) }

// System keeps system events, which have no user (ORed with Users).
func (q *Query) System() *Query { return q.add("user", []string{""}) }

// Modules keeps the activities of any of the modules.
func (q *Query) Modules(modules ...string) *Query { return q.add("module", modules) }

// Actions keeps the activities of any of the actions.
func (q *Query) Actions(actions ...string) *Query { return q.add("action", actions) }

// Resources keeps the activities on any of the resources.
func (q *Query) Resources(resources ...string) *Query { return q.add("resource", resources) }

// Since keeps activities at or after t.
func (q *Query) Since(t time.Time) *Query {
	q.v.Set("since", t.UTC().Format(time.RFC3339Nano))
	return q
}

// Until keeps activities before t.
func (q *Query) Until(t time.Time) *Query {
	q.v.Set("until", t.UTC().Format(time.RFC3339Nano))
	return q
}

// Limit sets the page size of All (0: activitystore.DefaultLimit), and for
// Iter the most activities it yields (0: all).
func (q *Query) Limit(n int) *Query { q.limit = n; return q }

// Skip passes over the first n matches.
func (q *Query) Skip(n int) *Query { q.skip = n; return q }

// After continues after the page whose Next cursor is given.
func (q *Query) After(cursor string) *Query {
	if cursor == "" {
		q.v.Del("cursor")
	} else {
		q.v.Set("cursor", cursor)
	}
	return q
}

// values returns the filters with the extra parameters kv (name, value,
// ...).
func (q *Query) values(kv ...string) url.Values {
	v := url.Values{}
	for k, vs := range q.v {
		v[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// All returns one page of matches, newest first, and the cursor of the next
// page. The server may end a page of large activities before the limit; its
// Next then continues it.
func (q *Query) All(ctx context.Context) (activitystore.Page, error) {
	v := q.values()
	if q.limit != 0 {
		v.Set("limit", strconv.Itoa(q.limit))
	}
	if q.skip != 0 {
		v.Set("skip", strconv.Itoa(q.skip))
	}
	req, err := q.c.request(ctx, http.MethodGet, "/v1/activities", v, nil)
	if err != nil {
		return activitystore.Page{}, err
	}
	var out struct {
		Activities []activitystore.Activity `json:"activities"`
		Next       string                   `json:"next_cursor"`
	}
	if err := q.c.do(req, &out); err != nil {
		return activitystore.Page{}, err
	}
	return activitystore.Page{Activities: out.Activities, Next: out.Next}, nil
}

// Iter yields every match, newest first (at most the Limit when set), page
// by page; an error ends it.
func (q *Query) Iter(ctx context.Context) iter.Seq2[activitystore.Activity, error] {
	return func(yield func(activitystore.Activity, error) bool) {
		left := q.limit
		p := &Query{c: q.c, v: q.values(), skip: q.skip}
		for {
			p.limit = activitystore.MaxLimit
			if q.limit > 0 {
				p.limit = min(left, activitystore.MaxLimit)
			}
			page, err := p.All(ctx)
			if err != nil {
				yield(activitystore.Activity{}, err)
				return
			}
			for _, a := range page.Activities {
				if !yield(a, nil) {
					return
				}
			}
			left -= len(page.Activities)
			if page.Next == "" || (q.limit > 0 && left <= 0) {
				return
			}
			p.skip = 0
			p.After(page.Next)
		}
	}
}

// Count returns how many activities match; Limit, Skip and the cursor do
// not apply.
func (q *Query) Count(ctx context.Context) (int, error) {
	v := q.values()
	v.Del("cursor")
	req, err := q.c.request(ctx, http.MethodGet, "/v1/count", v, nil)
	if err != nil {
		return 0, err
	}
	var out struct {
		Count int `json:"count"`
	}
	err = q.c.do(req, &out)
	return out.Count, err
}

// CountBy counts the matches per value of the field (one of
// activitystore.Fields), most frequent first.
func (q *Query) CountBy(ctx context.Context, field string) ([]activitystore.ValueCount, error) {
	v := q.values("field", field, "limit", "100000")
	v.Del("cursor")
	req, err := q.c.request(ctx, http.MethodGet, "/v1/count_by", v, nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Counts []activitystore.ValueCount `json:"counts"`
	}
	err = q.c.do(req, &out)
	return out.Counts, err
}

// Timeline counts the matches per bucket of time, oldest first, zeros
// included, as activitystore.Query.Timeline does.
func (q *Query) Timeline(ctx context.Context, bucket time.Duration) ([]activitystore.Bucket, error) {
	v := q.values("bucket", bucket.String())
	v.Del("cursor")
	req, err := q.c.request(ctx, http.MethodGet, "/v1/timeline", v, nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Buckets []activitystore.Bucket `json:"buckets"`
	}
	err = q.c.do(req, &out)
	return out.Buckets, err
}

// Tail yields the matches of q appended from now on (or just after the
// activity of the cursor from), as the server's /v1/tail streams them.
// When the connection drops it reconnects, after a pause that grows to 5
// s, with Last-Event-ID set to the last cursor, so nothing is skipped or
// repeated; a tail that fell behind the server's backlog yields a
// *activitystore.LagError and goes on. It ends when ctx does, or with an
// error answer of the server other than 503 or 429 (which it yields).
func (c *Client) Tail(ctx context.Context, q *Query, from string) iter.Seq2[activitystore.TailEvent, error] {
	if q == nil {
		q = c.Query()
	}
	return func(yield func(activitystore.TailEvent, error) bool) {
		last := from
		pause := 100 * time.Millisecond
		for ctx.Err() == nil {
			v := q.values()
			v.Del("cursor")
			req, err := c.request(ctx, http.MethodGet, "/v1/tail", v, nil)
			if err != nil {
				yield(activitystore.TailEvent{}, err)
				return
			}
			if last != "" {
				req.Header.Set("Last-Event-ID", last)
			}
			req.Header.Set("Accept", "text/event-stream")
			resp, err := c.hc.Do(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = answerError(resp)
				resp.Body.Close()
				// A busy or restarting server is tried again; any other
				// refusal ends the tail.
				var se *StatusError
				if !errors.As(err, &se) || (se.Status != http.StatusServiceUnavailable && se.Status != http.StatusTooManyRequests) {
					yield(activitystore.TailEvent{}, err)
					return
				}
			} else if err == nil {
				pause = 100 * time.Millisecond
				var stop bool
				last, stop = readEvents(resp, last, yield)
				resp.Body.Close()
				if stop {
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
				pause = min(2*pause, 5*time.Second)
			}
		}
	}
}

// readEvents yields the events of one tail stream and returns the cursor of
// the last one, and whether the consumer stopped or the server ended the
// tail with an error.
func readEvents(resp *http.Response, last string, yield func(activitystore.TailEvent, error) bool) (string, bool) {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var id, event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				event = ""
				continue
			}
			kind := event
			ev, err, ok := decodeEvent(id, kind, data.String())
			data.Reset()
			event = ""
			if !ok {
				continue
			}
			if id != "" {
				last = id
			}
			if !yield(ev, err) || kind == "error" {
				return last, true
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		// An event too long to be one of the server's: not a dropped
		// connection to reconnect after.
		if errors.Is(err, bufio.ErrTooLong) {
			yield(activitystore.TailEvent{}, fmt.Errorf("client: the tail: %w", err))
			return last, true
		}
	}
	return last, false
}

// decodeEvent turns one server-sent event into what Tail yields; ok is
// false for an event it does not know.
func decodeEvent(id, event, data string) (activitystore.TailEvent, error, bool) {
	switch event {
	case "activity", "":
		var a activitystore.Activity
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return activitystore.TailEvent{}, fmt.Errorf("client: an activity of the tail: %w", err), true
		}
		return activitystore.TailEvent{Activity: a, Cursor: id}, nil, true
	case "lagged":
		var l struct {
			Missed int64  `json:"missed"`
			Resume string `json:"resume"`
		}
		if err := json.Unmarshal([]byte(data), &l); err != nil {
			return activitystore.TailEvent{}, fmt.Errorf("client: a lagged event of the tail: %w", err), true
		}
		return activitystore.TailEvent{}, &activitystore.LagError{Missed: l.Missed, Resume: l.Resume}, true
	case "error":
		var e errorBody
		json.Unmarshal([]byte(data), &e)
		return activitystore.TailEvent{}, &StatusError{Status: http.StatusServiceUnavailable, Message: e.Error}, true
	}
	return activitystore.TailEvent{}, nil, false
}
