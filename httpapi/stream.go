package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/activitystore/activitystore"
)

// Export flushes after this many activities or this long, whichever comes
// first, so that the client sees progress without a write per line.
const (
	exportFlushEvery    = 256
	exportFlushInterval = time.Second
)

// export serves GET /v1/export: every match as NDJSON, newest first. The
// status is sent with the first activity, so an error before it is an error
// answer. An error after it ends the stream with a line {"error": ...}: an
// export that is complete ends without one, after its last activity (or is
// empty). HEAD runs the export up to its first activity, so that it answers
// the status GET would.
//
// The write deadline is set again before each write and flush, so a client
// that stops reading for streamWriteTimeout is dropped.
func (h *handler) export(w http.ResponseWriter, r *http.Request, who Principal) error {
	defer h.streamEnded()
	p, err := parseParams(r, filterParams...)
	if err != nil {
		return err
	}
	q, err := h.query(p, who)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	var line []byte
	started := false
	start := func() {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.armWrite(rc)
		w.WriteHeader(http.StatusOK)
		started = true
	}
	head := r.Method == http.MethodHead
	n, flushed := 0, time.Now()
	for a, err := range q.Iter(r.Context()) {
		if err != nil {
			err = fmt.Errorf("export: %w", err)
			if !started {
				return err
			}
			if r.Context().Err() == nil {
				h.log.Warn("activitystore http: export cut short", "err", err, "sent", n)
			}
			b, _ := json.Marshal(toAPIError(err).body())
			h.armWrite(rc)
			if _, err := w.Write(append(b, '\n')); err == nil {
				h.armWrite(rc)
				rc.Flush()
			}
			return nil
		}
		if !started {
			start()
			if head {
				return nil
			}
		}
		line = append(a.AppendJSON(line[:0]), '\n')
		h.armWrite(rc)
		if _, err := w.Write(line); err != nil {
			return nil // the client went away, or stopped reading
		}
		n++
		if n%exportFlushEvery == 0 || time.Since(flushed) >= exportFlushInterval {
			h.armWrite(rc)
			if err := rc.Flush(); err != nil {
				return nil
			}
			flushed = time.Now()
		}
	}
	if !started {
		start()
	}
	h.armWrite(rc)
	rc.Flush()
	return nil
}

// armWrite gives the next write or flush of a stream h.writeTimeout to
// complete. A ResponseWriter without deadlines (as in tests) is let be.
func (h *handler) armWrite(rc *http.ResponseController) {
	rc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
}

// streamEnded calls the onStreamEnd hook, if any.
func (h *handler) streamEnded() {
	if h.onStreamEnd != nil {
		h.onStreamEnd()
	}
}

// tailItem is one value of a Tail sequence, passed from the goroutine that
// reads it to the one that writes the stream.
type tailItem struct {
	ev  activitystore.TailEvent
	err error
}

// tail serves GET /v1/tail: the matches appended from now on, or after the
// cursor of Last-Event-ID or from, as Server-Sent Events.
func (h *handler) tail(w http.ResponseWriter, r *http.Request, who Principal) error {
	defer h.streamEnded() // runs last, once the reader below has ended
	q, from, fromField, err := h.tailQuery(r, who)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	items := make(chan tailItem)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	seq, err := h.s.Tail(ctx, q, from) // from here on, appends reach the stream
	if err != nil {
		var qe *activitystore.QueryError
		if errors.As(err, &qe) && qe.Field == "from" {
			return badParam(fromField, "%s is not a cursor of this tail: %s", fromField, qe.Reason)
		}
		return fmt.Errorf("tail: %w", err)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}

	// The stream outlives the server's write timeout, but each write must
	// complete within h.writeTimeout: a client that stops reading is
	// dropped. The heartbeat makes sure an idle stream writes more often.
	rc := http.NewResponseController(w)
	h.armWrite(rc)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		h.log.Warn("activitystore http: tail cannot flush", "err", err)
		return nil
	}

	wg.Go(func() {
		defer close(items)
		for ev, err := range seq {
			select {
			case items <- tailItem{ev, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, activitystore.ErrLagged) {
				return
			}
		}
	})

	heartbeat := time.NewTimer(h.heartbeat)
	defer heartbeat.Stop()
	var buf, line []byte
	for {
		buf = buf[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			buf = append(buf, ": ping\n\n"...)
		case it, ok := <-items:
			if !ok {
				return nil // the limit was reached
			}
			var lag *activitystore.LagError
			switch {
			case it.err == nil:
				line = it.ev.Activity.AppendJSON(line[:0])
				buf = appendEvent(buf, it.ev.Cursor, "activity", line)
			case errors.As(it.err, &lag):
				b, _ := json.Marshal(struct {
					Missed int64  `json:"missed"`
					Resume string `json:"resume"`
				}{lag.Missed, lag.Resume})
				buf = appendEvent(buf, lag.Resume, "lagged", b)
			default:
				if ctx.Err() != nil {
					return nil
				}
				err := fmt.Errorf("tail: %w", it.err)
				if !errors.Is(err, activitystore.ErrClosed) {
					h.log.Warn("activitystore http: tail ended by an error", "err", err)
				}
				b, _ := json.Marshal(toAPIError(err).body())
				h.armWrite(rc)
				if _, err := w.Write(appendEvent(buf, "", "error", b)); err == nil {
					h.armWrite(rc)
					rc.Flush()
				}
				return nil
			}
		}
		h.armWrite(rc)
		if _, err := w.Write(buf); err != nil {
			return nil // the client went away, or stopped reading
		}
		h.armWrite(rc)
		if err := rc.Flush(); err != nil {
			return nil
		}
		heartbeat.Reset(h.heartbeat)
	}
}

// tailQuery reads the parameters of a tail: its query and the cursor to
// resume after. It refuses what can be refused while the answer can still be
// an error: a bad parameter, a closed store, a bad query or cursor.
func (h *handler) tailQuery(r *http.Request, who Principal) (q *activitystore.Query, from, fromField string, err error) {
	p, err := parseParams(r, withFilters("limit", "from")...)
	if err != nil {
		return nil, "", "", err
	}
	q, err = h.query(p, who)
	if err != nil {
		return nil, "", "", err
	}
	if _, ok := p.one("limit"); ok {
		limit, err := p.int("limit", 0, 1, maxInt)
		if err != nil {
			return nil, "", "", err
		}
		q.Limit(limit)
	}
	fromField = "from"
	if v, ok := p.one("from"); ok {
		if v == "" {
			return nil, "", "", badParam("from", "from is empty; leave it out to start from now")
		}
		from = v
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		from, fromField = v, "Last-Event-ID"
	}
	return q, from, fromField, nil
}

// appendEvent appends one Server-Sent Event to buf.
func appendEvent(buf []byte, id, event string, data []byte) []byte {
	if id != "" {
		buf = append(append(append(buf, "id: "...), id...), '\n')
	}
	buf = append(append(append(buf, "event: "...), event...), '\n')
	for line := range strings.SplitSeq(string(data), "\n") {
		buf = append(append(append(buf, "data: "...), line...), '\n')
	}
	return append(buf, '\n')
}
