package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/activitystore/activitystore"
)

// legacyActivities serves GET /activity/activities/: the newest activities as
// a bare JSON array, for the platform's existing clients. Unlike the other
// routes, it ignores the query parameters it does not take.
func (h *handler) legacyActivities(w http.ResponseWriter, r *http.Request, who Principal) error {
	// Its clients send parameters of their own: only limit and skip are
	// read, the others ignored.
	p, err := parseKnownParams(r, "limit", "skip")
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	limit, err := pageParams(p, q, false)
	if err != nil {
		return err
	}
	// A bare array has no room for a cursor: the page is streamed whole,
	// a chunk at a time, the answer begun with the first
	// chunk. After that, an error can only cut it short, and is logged.
	var buf []byte
	n := 0
	_, err = readPage(r.Context(), q, limit, streamFirstChunk, func(acts []activitystore.Activity) bool {
		if buf == nil {
			startJSON(w)
			buf = append(make([]byte, 0, 64<<10), '[')
		}
		for i := range acts {
			if n++; n > 1 {
				buf = append(buf, ',')
			}
			buf = acts[i].AppendJSON(buf)
			if len(buf) >= 32<<10 {
				if _, err := w.Write(buf); err != nil {
					return false // the client went away
				}
				buf = buf[:0]
			}
		}
		return true
	})
	if err != nil {
		if buf == nil {
			return fmt.Errorf("recent activities: %w", err)
		}
		h.log.Warn("activitystore http: recent activities cut short", "err", err)
		return nil
	}
	w.Write(append(buf, "]\n"...))
	return nil
}

// startJSON begins a 200 answer of JSON.
func startJSON(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
}

// pageChunk is the most activities a page reads from the store at a time,
// chunkBytes about the most bytes of records it reads at a time (the first
// chunk, firstChunk activities, enough for a page of the default limit, is at
// most 4 MiB, or streamFirstChunk for a streamed page, at most 1 MiB; the
// next ones are sized by the records read so far), and
// pageBudget about the most bytes of JSON a page of /v1/activities holds:
// past it the page ends, with the cursor of the rest. Together they bound
// the memory of a page, whatever its limit.
const (
	pageChunk        = 128
	firstChunk       = 64
	streamFirstChunk = 16
	chunkBytes       = 1 << 20
	pageBudget       = 8 << 20
)

// readPage reads limit matches of q (after its skip and cursor), a chunk at
// a time, the first of first activities, and calls more with each chunk, the first even when empty, until
// it returns false. It returns the cursor that follows the last chunk read,
// empty when no match is left.
func readPage(ctx context.Context, q *activitystore.Query, limit, first int, more func([]activitystore.Activity) bool) (string, error) {
	left := limit
	chunk := first
	var read, bytes int
	for {
		page, err := q.Limit(min(left, chunk)).All(ctx)
		if err != nil {
			return "", err
		}
		left -= len(page.Activities)
		for i := range page.Activities {
			bytes += page.Activities[i].Size()
		}
		read += len(page.Activities)
		if !more(page.Activities) || page.Next == "" || left <= 0 {
			return page.Next, nil
		}
		chunk = max(1, min(pageChunk, chunkBytes/max(1, bytes/read)))
		q.Skip(0).After(page.Next)
	}
}

// listActivities serves GET /v1/activities: one page of matches and the
// cursor of the next.
func (h *handler) listActivities(w http.ResponseWriter, r *http.Request, who Principal) error {
	p, err := parseParams(r, withFilters("limit", "skip", "cursor")...)
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	limit, err := pageParams(p, q, true)
	if err != nil {
		return err
	}
	buf := []byte(`{"activities":[`)
	n := 0
	cursor, err := readPage(r.Context(), q, limit, firstChunk, func(acts []activitystore.Activity) bool {
		for i := range acts {
			if n++; n > 1 {
				buf = append(buf, ',')
			}
			buf = acts[i].AppendJSON(buf)
		}
		return len(buf) < pageBudget
	})
	if err != nil {
		return fmt.Errorf("query activities: %w", err)
	}
	next, err := json.Marshal(cursor)
	if err != nil {
		return fmt.Errorf("encode the cursor: %w", err)
	}
	buf = append(append(append(buf, `],"next_cursor":`...), next...), "}\n"...)
	startJSON(w)
	w.Write(buf)
	return nil
}

// pageParams applies limit, skip and, withCursor, cursor to q, and returns
// the limit.
func pageParams(p params, q *activitystore.Query, withCursor bool) (int, error) {
	limit, err := p.int("limit", activitystore.DefaultLimit, 1, activitystore.MaxLimit)
	if err != nil {
		return 0, err
	}
	skip, err := p.int("skip", 0, 0, maxInt)
	if err != nil {
		return 0, err
	}
	q.Limit(limit).Skip(skip)
	if c, ok := p.one("cursor"); ok && withCursor {
		if c == "" {
			return 0, badParam("cursor", "cursor is empty; leave it out for the first page")
		}
		q.After(c)
	}
	return limit, nil
}

// maxInt is the largest int.
const maxInt = int(^uint(0) >> 1)

// getActivity serves GET /v1/activities/{id}.
func (h *handler) getActivity(w http.ResponseWriter, r *http.Request, who Principal) error {
	if _, err := parseParams(r); err != nil {
		return err
	}
	id, err := activitystore.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	a, err := h.s.Get(r.Context(), id)
	if err != nil {
		if errors.Is(err, activitystore.ErrNotFound) {
			return &apiError{status: http.StatusNotFound, field: "id", msg: err.Error(), err: err}
		}
		return err
	}
	if err := mayRead(&a, who); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// count serves GET /v1/count.
func (h *handler) count(w http.ResponseWriter, r *http.Request, who Principal) error {
	p, err := parseParams(r, filterParams...)
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	n, err := q.Count(r.Context())
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	writeJSON(w, http.StatusOK, struct {
		Count int `json:"count"`
	}{n})
	return nil
}

// count_by limits: the default and the largest number of values answered.
const (
	defaultCountByLimit = 1000
	maxCountByLimit     = 100_000
)

// countBy serves GET /v1/count_by: the limit most frequent values, and
// whether others were left out.
func (h *handler) countBy(w http.ResponseWriter, r *http.Request, who Principal) error {
	p, err := parseParams(r, withFilters("field", "limit")...)
	if err != nil {
		return err
	}
	field, ok := p.one("field")
	if !ok {
		return badParam("field", "field is required: one of %v", activitystore.Fields)
	}
	limit, err := p.int("limit", defaultCountByLimit, 1, maxCountByLimit)
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	counts, err := q.CountBy(r.Context(), field)
	if err != nil {
		return fmt.Errorf("count by %s: %w", clip(field), err)
	}
	if field == "user" {
		field = "user_id"
	}
	truncated := len(counts) > limit
	if truncated {
		counts = counts[:limit] // most frequent first
	}
	if counts == nil {
		counts = []activitystore.ValueCount{}
	}
	writeJSON(w, http.StatusOK, struct {
		Field     string                     `json:"field"`
		Counts    []activitystore.ValueCount `json:"counts"`
		Truncated bool                       `json:"truncated"`
	}{field, counts, truncated})
	return nil
}

// defaultBucket is the bucket of a timeline that names none.
const defaultBucket = "1h"

// timeline serves GET /v1/timeline.
func (h *handler) timeline(w http.ResponseWriter, r *http.Request, who Principal) error {
	p, err := parseParams(r, withFilters("bucket")...)
	if err != nil {
		return err
	}
	text, ok := p.one("bucket")
	if !ok {
		text = defaultBucket
	}
	bucket, err := parseBucket(text)
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	buckets, err := q.Timeline(r.Context(), bucket)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	if buckets == nil {
		buckets = []activitystore.Bucket{}
	}
	writeJSON(w, http.StatusOK, struct {
		Bucket  string                 `json:"bucket"`
		Buckets []activitystore.Bucket `json:"buckets"`
	}{text, buckets})
	return nil
}

// healthz serves GET /healthz: 200 while the store answers a one-activity
// read, 503 once it is closed.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if _, err := parseParams(r); err != nil {
		return err
	}
	if err := h.ping(r); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if err := h.s.WriteErr(); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
	return nil
}

// ping checks that the store serves reads, at the cost of one record.
func (h *handler) ping(r *http.Request) error {
	_, err := h.s.Query().Limit(1).All(r.Context())
	return err
}
