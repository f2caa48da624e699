package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
	"github.com/spf13/cobra"
)

// shutdownGrace is how long serve waits for requests in flight when it is
// told to stop, before it closes their connections.
const shutdownGrace = 15 * time.Second

// The timeouts of serve's connections.
const (
	// readHeaderTimeout bounds reading a request's header.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request, body included: generous,
	// for large NDJSON imports.
	readTimeout = 10 * time.Minute
	// writeTimeout bounds writing an answer. The streams (/v1/tail and
	// /v1/export) set their own rolling deadline for each write with
	// http.ResponseController, so they are not cut by it.
	writeTimeout = 2 * time.Minute
	// idleTimeout bounds the wait for the next request of a keep-alive
	// connection.
	idleTimeout = 2 * time.Minute
	// maxConnections bounds the connections served at once (about 20 KiB
	// each when idle); more wait in the listen queue.
	maxConnections = 4096
	// memoryLimit is the Go runtime's soft memory limit serve sets when
	// GOMEMLIMIT is not set: the garbage collector works harder as the
	// heap nears it, so the garbage of heavy requests does not pile up.
	// Pebble's block cache and memtables are outside it.
	memoryLimit = 700 << 20
)

// serveStoreOptions and serveAPIOptions are serve's settings of the store
// and of the API, chosen so that the server stays under about 1 GiB
// whatever its clients do (README, "Limits"): pebble's block cache
// 128 MiB and memtables at most 4 × 32 MiB, the store's cache 64 MiB,
// POSTs 4 × about 2 × 32 MiB, reads 8 × 16 MiB, streams 128 × 1 MiB,
// connections 4096 × 20 KiB.
var (
	serveStoreOptions = activitystore.Options{BlockCacheSize: 128 << 20, MemTableSize: 32 << 20, CacheBytes: 64 << 20}
	serveAPIOptions   = httpapi.Options{MaxBodyBytes: 32 << 20, MaxConcurrentPosts: 4, MaxConcurrentReads: 8, MaxStreams: 128}
)

func (a *app) serveCommand() *cobra.Command {
	var cfg *serveConfig
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the store over HTTP",
		Long: `serve opens the store in --dir (creating it if needed) and serves the HTTP API
on --addr until it gets SIGINT or SIGTERM. It prints the address it listens on
to standard error ("listening on http://HOST:PORT", or https with --tls-cert);
with port 0 that is the port the system picked.

Every flag can also be set by the environment variable in brackets after it
(ACTIVITYSTORE_ and the flag's name: ACTIVITYSTORE_COLD_AFTER=30d); a flag on
the command line wins. Durations take days (90m, 24h, 7d), sizes a unit (512KiB,
64MiB, 1GiB, or MB, GB). A bad value is an error naming its flag.

Without --tokens every request is served as an admin: keep the server on a
private address or behind your own access control. With --tokens FILE, requests
need "Authorization: Bearer TOKEN" with a token of the file, one per line:

    TOKEN USER_ID [admin]

A user sees and writes only their own activities; admin sees and writes every
user's. Lines starting with # and blank lines are ignored.

In the background, every --compact-every, serve archives the windows that ended
--cold-after ago and, with --retain, deletes what is older than that; it logs
each run (--log-format text or json, on standard error).

Connections have timeouts: 10s to read a request's header, 10m to read a
whole request (bodies may be large NDJSON imports), 2m to write an answer and
2m idle between the requests of a connection. The streams (/v1/tail and
/v1/export) set their own rolling deadline for each write, so the 2m write
timeout does not cut them. At most 4096 connections are served at once; more
wait to be accepted.

Memory: with the default settings the server stays under about 1 GiB whatever
its clients do (README, "Limits"): --block-cache, 4 x --memtable, --cache,
--max-posts x 2 x --max-body, --max-reads x 16MiB and --max-streams x 1MiB are
its main parts. It sets the Go runtime's soft memory limit to 700 MiB unless
GOMEMLIMIT is set.

With --archives s3://bucket/prefix the archives go to an S3-compatible bucket,
under a folder for --node; several serves on several machines share a bucket
with different --node numbers. serve --read-only --archives s3://... serves
every node's archives, read-only, with no store of its own: it lists the bucket
every --poll-every for new archives, and answers writes and tails with 405.

On SIGINT or SIGTERM it stops taking connections, ends the open tail streams,
waits up to 15s for the other requests in flight, then closes the store.`,
		Args: cobra.NoArgs,
		PreRunE: func(c *cobra.Command, _ []string) error {
			if err := applyEnv(c); err != nil {
				return err
			}
			return cfg.check()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(memoryLimit)
			}
			cfg.api.Logger = cfg.logger(a)
			if cfg.tokens != "" {
				tokens, err := loadTokens(cfg.tokens)
				if err != nil {
					return err
				}
				cfg.api.Authenticate = httpapi.TokenAuth(tokens)
			}
			return a.serve(c.Context(), cfg)
		},
	}
	cfg = serveFlags(c, &a.loc)
	return c
}

// serve runs the HTTP API as cfg says until ctx is done, then shuts down:
// the server first, the store last.
func (a *app) serve(ctx context.Context, cfg *serveConfig) error {
	log := cfg.api.Logger
	so := cfg.store
	var s *activitystore.Store
	var err error
	if cfg.readOnly {
		if s, err = activitystore.OpenReader(&so); err != nil {
			return fmt.Errorf("open %s: %w", a.loc.archives, err)
		}
	} else if s, err = a.open(true, &so); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		s.Close()
		return err
	}
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	ln = limitListener(ln, maxConnections)
	srv := a.newServer(endStreamsOnShutdown(streams, httpapi.New(s, cfg.api)))
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(a.stderr, "listening on %s://%s\n", scheme, ln.Addr())
	if cfg.api.Authenticate == nil && !isLoopback(ln.Addr()) {
		fmt.Fprintln(a.stderr, "activitystore: warning: no --tokens: every request is served as an admin")
	}
	served := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			served <- srv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
			return
		}
		served <- srv.Serve(ln)
	}()
	bgCtx, stopBg := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		if !cfg.readOnly {
			compactLoop(bgCtx, s, cfg.compactEvery, log)
		}
	}()

	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
		fmt.Fprintln(a.stderr, "shutting down")
		endStreams()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		serveErr = srv.Shutdown(sctx)
		cancel()
		if serveErr != nil {
			srv.Close()
			serveErr = fmt.Errorf("shutdown: %w", serveErr)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	stopBg()
	<-bgDone
	if err := s.Close(); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("close %s: %w", a.dir, err)
	}
	return serveErr
}

// compactLoop runs Compact every interval (never when it is zero) until ctx
// ends, and logs each run: how long it took and the archives and activities
// before and after.
func compactLoop(ctx context.Context, s *activitystore.Store, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		before, err := s.Stats(ctx)
		if err == nil {
			err = s.Compact(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("compaction", "err", err, "seconds", time.Since(start).Seconds())
			continue
		}
		after, err := s.Stats(ctx)
		if err != nil {
			log.Error("compaction", "err", err)
			continue
		}
		log.Info("compaction", "seconds", time.Since(start).Seconds(),
			"archives_before", before.Archives, "archives", after.Archives,
			"archived_before", before.ArchivedActivities, "archived", after.ArchivedActivities,
			"activities_before", before.Activities, "activities", after.Activities)
	}
}

// newServer returns the http.Server of serve for h, with its timeouts and
// its error log on a.stderr.
func (a *app) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          log.New(a.stderr, "activitystore: http: ", 0),
	}
}

// endStreamsOnShutdown wraps h so that the requests that stream until the
// client leaves (the tail, or anything asking for text/event-stream) end when
// streams is done, which serve does when it begins to shut down: Shutdown
// waits for requests in flight, and those would never finish on their own.
func endStreamsOnShutdown(streams context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/tail" || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(streams, cancel)
			defer stop()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// loadTokens reads a tokens file: one "TOKEN USER_ID [admin]" per line,
// blank lines and lines starting with # ignored. A malformed line is an
// error naming the file and the line.
func loadTokens(path string) (map[string]httpapi.Principal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tokens: %w", err)
	}
	tokens := map[string]httpapi.Principal{}
	lineOf := map[string]int{}
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...))
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, bad("want TOKEN USER_ID [admin], got %d fields", len(f))
		}
		p := httpapi.Principal{UserID: f[1]}
		if len(f) == 3 {
			if f[2] != "admin" {
				return nil, bad("third field %q: want admin or nothing", f[2])
			}
			p.Admin = true
		}
		if at, dup := lineOf[f[0]]; dup {
			return nil, bad("the token is already on line %d", at)
		}
		tokens[f[0]], lineOf[f[0]] = p, n
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s: no tokens: every request would be refused", path)
	}
	return tokens, nil
}

// limitListener returns a listener that has at most n of its connections
// open at once: Accept waits while n are.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{} // closed by Close, so that a waiting Accept returns
	closeOnce sync.Once
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
