package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
)

// Principal is who makes a request, as Options.Authenticate tells it.
type Principal struct {
	// UserID is the user the principal acts as.
	UserID string
	// Admin principals see and write every user's activities; others only
	// their own.
	Admin bool
}

// ErrUnauthenticated is returned by the Authenticate of TokenAuth for a
// request with no known bearer token.
var ErrUnauthenticated = errors.New("httpapi: missing or unknown bearer token")

// Options configure the handler. The zero value gives the defaults.
type Options struct {
	// Authenticate names the principal of a request; an error makes the
	// request a 401. With no Authenticate every request is served as an
	// admin: put the handler behind your own access control.
	Authenticate func(*http.Request) (Principal, error)

	// MaxBodyBytes bounds the body of a POST; a larger body is a 413. The
	// default (zero or less) is 64 MiB. A bulk import larger than this, or
	// than activitystore.MaxBatch activities, must be split into several
	// requests.
	MaxBodyBytes int64

	// MaxConcurrentPosts bounds how many POST requests read and store their
	// batch at once. A POST holds its whole batch in memory until it is
	// stored (the decoded activities, their encoding for the store and the
	// write batch), so ingestion takes up to about MaxConcurrentPosts × 3 ×
	// MaxBodyBytes of memory. A POST waits for a free slot before its body
	// is read; one whose context ends while it waits is a 503. A POST keeps
	// its slot while its body arrives, and must keep a pace: 64 KiB, and
	// the first byte, within 10 seconds of the previous ones, or it ends
	// with a 408. Zero or less means the default. The default is 4.
	MaxConcurrentPosts int

	// MaxConcurrentPostsPerPrincipal bounds the POSTs one principal has in
	// flight (with Authenticate set; without it every request is one
	// principal): one more is a 429 with Retry-After, so that no principal
	// holds every slot. Zero or less means the default, half of
	// MaxConcurrentPosts (at least 1).
	MaxConcurrentPostsPerPrincipal int

	// MaxTailsPerPrincipal bounds the tails (GET /v1/tail) one principal
	// has open, and MaxReadsPerPrincipal its reads in flight of the other
	// routes that read activities or walk indexes (pages, export, count,
	// count_by, timeline); one more is a 429 with Retry-After. Like the
	// POST limit they apply with Authenticate set. Zero or less means the
	// defaults, 16 and 8.
	MaxTailsPerPrincipal int
	MaxReadsPerPrincipal int

	// MaxConcurrentReads bounds the reads above but the streamed ones
	// (tails, exports, the legacy pages) served at once, whoever asks. A page holds up to about
	// 8 MiB of JSON plus the records of the chunk it reads (64 activities
	// first, then about 1 MiB of records at a time), about 16 MiB at most
	// with the largest details, so reads take up to about
	// MaxConcurrentReads × 16 MiB. A read waits up to 10 seconds for a
	// slot, then is a 503 with Retry-After; a slot given back goes to the
	// waiting read whose principal has the fewest reads in, held or
	// waiting. Zero or less means the default, 16.
	MaxConcurrentReads int

	// MaxStreams bounds the tails, exports and legacy pages (streamed
	// whole) open at once, whoever asks; one more is a 503 with
	// Retry-After. A stream holds about 256 KiB of
	// records at a time plus what its connection buffers, about 1 MiB at
	// most. Zero or less means the default, 128.
	MaxStreams int

	// Logger receives the errors that are the server's fault (answers with
	// status 500) and those that end a stream after it began. The default is
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	defaultMaxBodyBytes         = 64 << 20
	defaultMaxConcurrentPosts   = 4
	defaultMaxTailsPerPrincipal = 16
	defaultMaxReadsPerPrincipal = 8
	defaultMaxConcurrentReads   = 16
	defaultMaxStreams           = 128
)

// readSlotWait is how long a read waits for one of the MaxConcurrentReads
// slots before it is a 503.
const readSlotWait = 10 * time.Second

// heartbeatInterval is how long a tail stays silent before it sends a
// comment, so that proxies and clients know it is alive.
const heartbeatInterval = 15 * time.Second

// streamWriteTimeout is how long each write of a stream (export or tail) may
// take: the write deadline is set again before every write and flush, so a
// client that stops reading is dropped, while one that keeps up streams for
// as long as it likes. It must exceed heartbeatInterval: with HTTP/2 an
// expired deadline ends the stream even between writes.
const streamWriteTimeout = 30 * time.Second

// TokenAuth returns an Authenticate that reads "Authorization: Bearer TOKEN"
// and looks TOKEN up in tokens. The scheme name is matched without regard to
// case; an absent header or an unknown token is ErrUnauthenticated.
func TokenAuth(tokens map[string]Principal) func(*http.Request) (Principal, error) {
	return func(r *http.Request) (Principal, error) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, ErrUnauthenticated
		}
		p, ok := tokens[strings.TrimSpace(tok)]
		if !ok {
			return Principal{}, ErrUnauthenticated
		}
		return p, nil
	}
}

// handler serves the API on one store.
type handler struct {
	s            *activitystore.Store
	auth         func(*http.Request) (Principal, error)
	maxBody      int64
	posts        chan struct{} // a slot per POST allowed at once
	postsPer     *limiter      // POSTs in flight per principal
	tailsPer     *limiter      // tails open per principal
	readsPer     *limiter      // reads in flight per principal
	reads        *gate         // reads in flight, all principals
	streams      *gate         // tails and exports open, all principals
	bodyTimeout  time.Duration // bodyChunkTimeout; tests shorten it
	onPostSlot   func()        // called when a POST has its slot; tests set it
	heartbeat    time.Duration // heartbeatInterval; tests shorten it
	writeTimeout time.Duration // of each write of a stream: streamWriteTimeout; tests shorten it
	log          *slog.Logger
	m            *metrics
	mux          *http.ServeMux
	methods      map[string][]string // path pattern -> methods served, for 405s
	paths        []string            // path patterns in the order of registration

	// onStreamEnd, when set, is called as an export or tail handler returns,
	// after every goroutine it started has ended. Tests set it.
	onStreamEnd func()
}

// New returns the HTTP handler of the API on s; the package documentation
// lists its endpoints. The handler does not close s.
func New(s *activitystore.Store, o Options) http.Handler {
	return newHandler(s, o).mux
}

// newHandler returns the handler of the API on s.
func newHandler(s *activitystore.Store, o Options) *handler {
	h := &handler{
		s:            s,
		auth:         o.Authenticate,
		maxBody:      o.MaxBodyBytes,
		heartbeat:    heartbeatInterval,
		writeTimeout: streamWriteTimeout,
		log:          o.Logger,
		mux:          http.NewServeMux(),
		methods:      map[string][]string{},
	}
	if h.maxBody <= 0 {
		h.maxBody = defaultMaxBodyBytes
	}
	posts := o.MaxConcurrentPosts
	if posts <= 0 {
		posts = defaultMaxConcurrentPosts
	}
	h.posts = make(chan struct{}, posts)
	per := o.MaxConcurrentPostsPerPrincipal
	if per <= 0 {
		per = max(1, posts/2)
	}
	h.postsPer = newLimiter("POSTs", min(per, posts))
	h.bodyTimeout = bodyChunkTimeout
	tails, reads := o.MaxTailsPerPrincipal, o.MaxReadsPerPrincipal
	if tails <= 0 {
		tails = defaultMaxTailsPerPrincipal
	}
	if reads <= 0 {
		reads = defaultMaxReadsPerPrincipal
	}
	h.tailsPer, h.readsPer = newLimiter("tails", tails), newLimiter("reads", reads)
	allReads, streams := o.MaxConcurrentReads, o.MaxStreams
	if allReads <= 0 {
		allReads = defaultMaxConcurrentReads
	}
	if streams <= 0 {
		streams = defaultMaxStreams
	}
	h.reads = newGate("reads", allReads, readSlotWait)
	h.streams = newGate("tails, exports and legacy pages", streams, 0)
	if h.log == nil {
		h.log = slog.Default()
	}
	h.m = newMetrics(s, h.log)

	h.route("GET /activity/activities/{$}", h.legacyActivities, false)
	h.route("GET /activity/activities", h.legacyActivities, false)
	h.route("GET /v1/activities", h.listActivities, false)
	h.route("POST /v1/activities", h.postActivities, false)
	h.route("GET /v1/activities/{id}", h.getActivity, false)
	h.route("GET /v1/count", h.count, false)
	h.route("GET /v1/count_by", h.countBy, false)
	h.route("GET /v1/timeline", h.timeline, false)
	h.route("GET /v1/export", h.export, false)
	h.route("GET /v1/tail", h.tail, false)
	h.route("POST /v1/admin/backup", h.backup, false)
	h.route("GET /healthz", h.healthz, true)
	h.route("GET /metrics", h.metrics, true)
	h.route("GET /openapi.json", h.openapi, true)

	h.mux.Handle("GET /ui/", console())
	h.mux.Handle("GET /ui", http.RedirectHandler("ui/", http.StatusMovedPermanently))

	for _, path := range h.paths {
		allow := h.methods[path]
		h.mux.Handle(path, h.instrument(path, routePlain, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return &apiError{status: http.StatusMethodNotAllowed,
				msg: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allow, ", ")}
		}))
	}
	h.mux.Handle("/", h.instrument("unmatched", routePlain, func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, msg: "no endpoint at " + r.URL.Path}
	}))
	return h
}

// apiFunc serves one route for an authenticated principal. An error it
// returns becomes the JSON error answer, unless the answer has begun.
type apiFunc func(w http.ResponseWriter, r *http.Request, who Principal) error

// route registers fn under pattern ("METHOD /path"). Unless public, the
// request is authenticated first.
func (h *handler) route(pattern string, fn apiFunc, public bool) {
	method, path, _ := strings.Cut(pattern, " ")
	kind := routePlain
	switch pattern {
	case "POST /v1/activities":
		kind = routeAppend
	case "GET /v1/export", "GET /v1/tail":
		kind = routeStream
	}
	h.mux.Handle(pattern, h.instrument(pattern, kind, func(w http.ResponseWriter, r *http.Request) error {
		who := Principal{Admin: true}
		if !public && h.auth != nil {
			p, err := h.auth(r)
			if err != nil {
				if errors.Is(err, ErrUnauthenticated) {
					w.Header().Set("WWW-Authenticate", "Bearer")
				}
				return &apiError{status: http.StatusUnauthorized, msg: err.Error(), err: err}
			}
			if !p.Admin && p.UserID == "" {
				return &apiError{status: http.StatusForbidden, msg: "the principal is not an admin and has no user"}
			}
			who = p
		}
		per, all := h.limitsOf(pattern)
		if per != nil {
			release, err := per.acquire(h.principalKey(who))
			if err != nil {
				return err
			}
			defer release()
		}
		if all != nil {
			release, err := all.acquire(r.Context(), h.principalKey(who))
			if err != nil {
				return err
			}
			defer release()
		}
		return fn(w, r, who)
	}))
	if _, ok := h.methods[path]; !ok {
		h.paths = append(h.paths, path)
	}
	h.methods[path] = append(h.methods[path], method)
	if method == http.MethodGet {
		h.methods[path] = append(h.methods[path], http.MethodHead)
	}
}

// limitsOf returns the per-principal limit and the limit for everyone of
// the route pattern, each nil when it has none (POSTs take theirs in
// postActivities).
func (h *handler) limitsOf(pattern string) (*limiter, *gate) {
	switch pattern {
	case "GET /v1/tail":
		return h.tailsPer, h.streams
	case "GET /v1/export", "GET /activity/activities/{$}", "GET /activity/activities":
		// Streamed whole: long, but light.
		return h.readsPer, h.streams
	case "GET /v1/activities", "GET /v1/count", "GET /v1/count_by", "GET /v1/timeline":
		return h.readsPer, h.reads
	}
	return nil, nil
}
