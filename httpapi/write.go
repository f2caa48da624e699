package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/activitystore/activitystore"
)

// maxLineBytes bounds one line of an NDJSON body. A valid activity is far
// shorter: its details are at most 64 KiB, its labels 256 bytes each.
const maxLineBytes = 1 << 20

// ndjsonTypes are the media types of a body of one JSON object per line.
var ndjsonTypes = []string{"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}

// postActivities serves POST /v1/activities: it reads the whole batch, then
// stores it with one Append, so that a request is stored whole or not at all.
func (h *handler) postActivities(w http.ResponseWriter, r *http.Request, who Principal) error {
	if _, err := parseParams(r); err != nil {
		return err
	}
	// A batch is held whole in memory until it is stored: bound how many
	// are, before reading the body, and how many of them one principal
	// holds.
	release, err := h.postsPer.acquire(h.principalKey(who))
	if err != nil {
		return err
	}
	defer release()
	select {
	case h.posts <- struct{}{}:
		defer func() { <-h.posts }()
	case <-r.Context().Done():
		err := r.Context().Err()
		return &apiError{status: http.StatusServiceUnavailable, err: err,
			msg: fmt.Sprintf("the request ended while it waited for one of the %d POSTs served at once: %v", cap(h.posts), err)}
	}
	if h.onPostSlot != nil {
		h.onPostSlot()
	}
	b := &batch{who: who, maxBody: h.maxBody}
	paced := &pacedBody{r: r.Body, rc: http.NewResponseController(w), timeout: h.bodyTimeout, chunk: bodyChunk}
	body := bufio.NewReaderSize(paced, 64<<10)
	if err := skipBOM(body); err != nil {
		return err
	}
	if isNDJSON(r.Header.Get("Content-Type")) {
		err = b.readNDJSON(body)
	} else {
		err = b.readJSON(body)
	}
	if err != nil {
		return err
	}
	if len(b.acts) == 0 {
		return &apiError{status: http.StatusBadRequest, msg: "the body holds no activity"}
	}
	ids, err := h.s.Append(r.Context(), b.acts...)
	if err != nil {
		var ve *activitystore.ValidationError
		if errors.As(err, &ve) {
			status := http.StatusBadRequest
			if ve.Field == "" { // a limit of the whole batch
				status = http.StatusRequestEntityTooLarge
			}
			if status == http.StatusRequestEntityTooLarge {
				return b.refuse(status, ve.Index, ve.Field, "%s%s", ve.Reason, splitHint(b.maxBody))
			}
			return b.refuse(status, ve.Index, ve.Field, "%s", ve.Reason)
		}
		return fmt.Errorf("append %d activities: %w", len(b.acts), err)
	}
	h.m.appended.Add(float64(len(ids)))
	writeJSON(w, http.StatusCreated, struct {
		IDs []activitystore.ID `json:"ids"`
	}{ids})
	return nil
}

// isNDJSON reports whether the media type of the Content-Type contentType is
// one of ndjsonTypes. Any other is read as JSON.
func isNDJSON(contentType string) bool {
	return slices.Contains(ndjsonTypes, mediaType(contentType))
}

// mediaType returns the media type of a Content-Type, lower-cased. When the
// header does not parse (e.g. a parameter without a value), it is the part
// before the first ';', trimmed.
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(contentType, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

// bom is the UTF-8 encoding of the byte-order mark U+FEFF, which some tools
// put at the start of a file.
var bom = []byte("\xef\xbb\xbf")

// skipBOM skips a byte-order mark at the start of br.
func skipBOM(br *bufio.Reader) error {
	b, err := br.Peek(len(bom))
	if bytes.Equal(b, bom) {
		_, err := br.Discard(len(bom))
		return err
	}
	if err != nil && err != io.EOF {
		return readError(err)
	}
	return nil
}

// splitHint ends the message of a 413: what to do about it.
func splitHint(maxBody int64) string {
	return fmt.Sprintf("; a bulk import of more than %d activities or %d bytes must be split into several requests", activitystore.MaxBatch, maxBody)
}

// batch is the activities of one POST, with where each came from.
type batch struct {
	who     Principal
	maxBody int64 // the limit of the body, for the advice of a 413
	acts    []activitystore.Activity
	lines   []int // for NDJSON, the line of each activity; nil for JSON
	line    int   // for NDJSON, the line being read, from 1
}

// at names the activity i of the batch for the answer: its index, or the
// line it is on.
func (b *batch) at(i int) (index, line *int, where string) {
	if b.lines != nil {
		n := b.nextLine(i)
		return nil, &n, "line " + strconv.Itoa(n)
	}
	return &i, nil, "index " + strconv.Itoa(i)
}

// nextLine is the line of activity i; for the activity being read, which is
// not in lines yet, the line the reader is on.
func (b *batch) nextLine(i int) int {
	if i < len(b.lines) {
		return b.lines[i]
	}
	return b.line
}

// refuse returns the error answer, with the given status, for activity i
// (from 0) and its field.
func (b *batch) refuse(status, i int, field, format string, args ...any) *apiError {
	index, line, where := b.at(i)
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + " " + msg
	}
	return &apiError{status: status, field: field, index: index, line: line,
		msg: "activity at " + where + " refused: " + msg}
}

// full returns the answer to a batch that has no room for one more
// activity, or nil.
func (b *batch) full() error {
	if i := len(b.acts); i >= activitystore.MaxBatch {
		return b.refuse(http.StatusRequestEntityTooLarge, i, "",
			"is one too many: a request holds at most %d activities%s", activitystore.MaxBatch, splitHint(b.maxBody))
	}
	return nil
}

// add appends a to the batch after the access rules: a principal that is not
// an admin writes only under its own user, which is also the default.
func (b *batch) add(a activitystore.Activity) error {
	i := len(b.acts)
	if !b.who.Admin {
		switch a.UserID {
		case "":
			a.UserID = b.who.UserID
		case b.who.UserID:
		default:
			return b.refuse(http.StatusForbidden, i, "user_id",
				"%s is not yours: a principal that is not an admin writes only activities of its own user %q", clipped(a.UserID), b.who.UserID)
		}
	}
	b.acts = append(b.acts, a)
	return nil
}

// readJSON reads a body of one JSON object or an array of them.
func (b *batch) readJSON(body io.Reader) error {
	br := bufio.NewReader(body)
	first, err := peekNonSpace(br)
	if err != nil {
		if err == io.EOF {
			return &apiError{status: http.StatusBadRequest, msg: "the body is empty: send a JSON object, an array of them, or NDJSON with Content-Type application/x-ndjson"}
		}
		return readError(err)
	}
	dec := json.NewDecoder(br)
	switch first {
	case '{':
		if err := b.decodeNext(dec); err != nil {
			return err
		}
		if err := expectEOF(dec); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				return ae
			}
			return &apiError{status: http.StatusBadRequest, err: err,
				msg: "unexpected data after the JSON object: send several activities as a JSON array, or as NDJSON with Content-Type application/x-ndjson"}
		}
		return nil
	case '[':
		if _, err := dec.Token(); err != nil {
			return readError(err)
		}
		for dec.More() {
			if err := b.decodeNext(dec); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing ]
			if isReadError(err) && err != io.EOF {
				return readError(err)
			}
			return &apiError{status: http.StatusBadRequest, err: err, msg: "the JSON array is not closed: " + err.Error()}
		}
		if err := expectEOF(dec); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				return ae
			}
			return &apiError{status: http.StatusBadRequest, err: err, msg: "unexpected data after the JSON array"}
		}
		return nil
	}
	return &apiError{status: http.StatusBadRequest,
		msg: fmt.Sprintf("the body starts with %q: send a JSON object, an array of them, or NDJSON with Content-Type application/x-ndjson", first)}
}

// decodeNext decodes the next value of dec as an activity and adds it.
func (b *batch) decodeNext(dec *json.Decoder) error {
	if err := b.full(); err != nil {
		return err
	}
	i := len(b.acts)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if isReadError(err) {
			return readError(err)
		}
		return b.refuse(http.StatusBadRequest, i, "", "is not valid JSON: %v", err)
	}
	return b.decodeAdd(raw)
}

// decodeAdd decodes the JSON text raw as an activity and adds it.
func (b *batch) decodeAdd(raw []byte) error {
	if err := b.full(); err != nil {
		return err
	}
	a, err := decodeActivity(raw)
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return b.refuse(http.StatusBadRequest, len(b.acts), fe.field, "%s", fe.reason)
		}
		return b.refuse(http.StatusBadRequest, len(b.acts), "", "%v", err)
	}
	return b.add(a)
}

// readNDJSON reads a body of one JSON object per line, line by line as it
// arrives. Blank lines are skipped.
func (b *batch) readNDJSON(body io.Reader) error {
	b.lines = []int{}
	er := &errReader{r: body}
	sc := bufio.NewScanner(er)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	for sc.Scan() {
		b.line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if err := b.decodeAdd(text); err != nil {
			if er.err != nil {
				// The scanner hands over the partial line before a read
				// error: the failure is the read's, not the line's.
				return readError(er.err)
			}
			return err
		}
		b.lines = append(b.lines, b.line)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			b.line++
			return b.refuse(http.StatusBadRequest, len(b.acts), "", "is on a line longer than %d bytes", maxLineBytes)
		}
		return readError(err)
	}
	return nil
}

// errReader keeps the first error of r other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// peekNonSpace skips white space and returns the next byte, unread.
func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c, br.UnreadByte()
	}
}

// expectEOF checks that dec holds nothing more than white space.
func expectEOF(dec *json.Decoder) error {
	tok, err := dec.Token()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		if isReadError(err) {
			return readError(err)
		}
		return err
	}
	return fmt.Errorf("unexpected %v", tok)
}

// isReadError reports whether err comes from reading the body rather than
// from its content.
func isReadError(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return !errors.As(err, &se) && !errors.As(err, &te) && !errors.Is(err, io.ErrUnexpectedEOF)
}

// readError returns the answer to a failure to read the body: 413 over the
// size limit, 400 otherwise.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{status: http.StatusRequestEntityTooLarge, err: err,
			msg: fmt.Sprintf("the body is over the limit of %d bytes%s", mbe.Limit, splitHint(mbe.Limit))}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &apiError{status: http.StatusRequestTimeout, err: err,
			msg: fmt.Sprintf("the body came too slowly: each %d KiB of it, and its first byte, must arrive within %s of the previous ones", bodyChunk>>10, bodyChunkTimeout)}
	}
	return &apiError{status: http.StatusBadRequest, err: err, msg: "cannot read the body: " + err.Error()}
}
