package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/activitystore/activitystore"
)

// apiError is an error with the status and the JSON body of its answer.
type apiError struct {
	status int
	msg    string
	field  string // the parameter or activity field at fault, if one is
	index  *int   // the activity of a POST batch, from 0
	line   *int   // the line of an NDJSON body, from 1
	err    error  // the cause, if any
	// retryAfter, when positive, is sent as Retry-After, in seconds.
	retryAfter int
}

func (e *apiError) Error() string { return e.msg }

func (e *apiError) Unwrap() error { return e.err }

// errorBody is the JSON form of an error answer.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	Index *int   `json:"index,omitempty"`
	Line  *int   `json:"line,omitempty"`
}

// badParam returns a 400 for the query parameter name.
func badParam(name, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, field: name, msg: fmt.Sprintf(format, args...)}
}

// forbidden returns a 403 naming the parameter or field that asks for another
// user's activities.
func forbidden(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, field: field, msg: fmt.Sprintf(format, args...)}
}

// toAPIError maps err to its answer.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var qe *activitystore.QueryError
	var ve *activitystore.ValidationError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &qe):
		return &apiError{status: http.StatusBadRequest, field: qe.Field, msg: err.Error(), err: err}
	case errors.As(err, &ve):
		i := ve.Index
		return &apiError{status: http.StatusBadRequest, field: ve.Field, index: &i, msg: err.Error(), err: err}
	case errors.As(err, &mbe):
		return &apiError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("the body is over the limit of %d bytes%s", mbe.Limit, splitHint(mbe.Limit)), err: err}
	case errors.Is(err, activitystore.ErrInvalidID):
		return &apiError{status: http.StatusBadRequest, field: "id", msg: err.Error(), err: err}
	case errors.Is(err, activitystore.ErrNotFound):
		return &apiError{status: http.StatusNotFound, msg: err.Error(), err: err}
	case errors.Is(err, activitystore.ErrWriteFailed):
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error() + "; reads go on", err: err}
	case errors.Is(err, activitystore.ErrReadOnly):
		return &apiError{status: http.StatusMethodNotAllowed, msg: err.Error() + ": this server only reads (serve --read-only)", err: err}
	case errors.Is(err, activitystore.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, retryAfter: 5, msg: err.Error(), err: err}
	case errors.Is(err, activitystore.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error(), err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, msg: "the request was canceled: " + err.Error(), err: err}
	}
	return &apiError{status: http.StatusInternalServerError, msg: "internal error: " + err.Error(), err: err}
}

// maxErrorBytes bounds the text of an error answer.
const maxErrorBytes = 1024

// body returns the JSON form of e, its text cut to maxErrorBytes.
func (e *apiError) body() errorBody {
	msg := e.msg
	if len(msg) > maxErrorBytes {
		msg = strings.ToValidUTF8(msg[:maxErrorBytes-3], "") + "…"
	}
	return errorBody{Error: msg, Field: clip(e.field), Index: e.index, Line: e.line}
}

// clip cuts s to 64 bytes, for a name that came from a request.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}

// clipped returns s quoted, cut to its first 64 bytes when longer, so that
// an error never echoes a huge input whole.
func clipped(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:64], len(s))
}

// fail answers err, unless the answer has begun: then it can only log it.
func (h *handler) fail(w *recorder, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= http.StatusInternalServerError && ae.status != http.StatusServiceUnavailable {
		h.log.Error("activitystore http: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if w.wrote {
		h.log.Warn("activitystore http: error after the answer began", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	writeJSON(w, ae.status, ae.body())
}

// writeJSON answers v as JSON with the given status. A failure to write means
// the client went away: there is no one to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "internal error: cannot encode the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
