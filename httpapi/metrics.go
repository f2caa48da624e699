package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statsTimeout bounds the Counts call of one scrape.
const statsTimeout = 10 * time.Second

// streamBuckets are the buckets of the stream length histogram, in seconds:
// from an export of a few lines to a tail left open for an hour.
var streamBuckets = []float64{0.01, 0.1, 1, 10, 30, 60, 300, 600, 1800, 3600}

// metrics are the handler's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	streams  *prometheus.HistogramVec
	appended prometheus.Counter
	rejected *prometheus.CounterVec
	serve    http.Handler
}

func newMetrics(s *activitystore.Store, log *slog.Logger) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "activitystore",
			Subsystem: "http",
			Name:      "request_duration_seconds",
			Help:      "Time to serve a request, by route pattern and status code; streams (export and tail) answered 200 are in activitystore_http_stream_duration_seconds instead.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"route", "code"}),
		streams: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "activitystore",
			Subsystem: "http",
			Name:      "stream_duration_seconds",
			Help:      "How long export and tail streams lasted, by route pattern.",
			Buckets:   streamBuckets,
		}, []string{"route"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "activitystore",
			Subsystem: "http",
			Name:      "appended_activities_total",
			Help:      "Activities stored by POST /v1/activities.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "activitystore",
			Subsystem: "http",
			Name:      "append_rejected_requests_total",
			Help:      "POST /v1/activities requests refused (nothing of them stored), by status code.",
		}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.streams, m.appended, m.rejected, newStatsCollector(s)} {
		if err := m.reg.Register(c); err != nil {
			log.Error("activitystore http: cannot register a metric", "err", err)
		}
	}
	m.serve = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// metrics serves GET /metrics.
func (h *handler) metrics(w http.ResponseWriter, r *http.Request, _ Principal) error {
	h.m.serve.ServeHTTP(w, r)
	return nil
}

// statsCollector reads the store's Counts at each scrape: counters, no walk
// of an index, so that scrapes cost the same whatever the store holds.
type statsCollector struct {
	s                                                    *activitystore.Store
	up, activities, archived, segments, sealed, archives *prometheus.Desc
	diskBytes, cacheBytes                                *prometheus.Desc
}

func newStatsCollector(s *activitystore.Store) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("activitystore_"+name, help, labels, nil)
	}
	return &statsCollector{
		s:          s,
		up:         d("up", "1 when the store answered the scrape's Counts call, 0 when it did not (e.g. it is closed)."),
		activities: d("activities", "Activities stored, archived ones included."),
		archived:   d("archived_activities", "Activities in archive files."),
		segments:   d("segments", "Segments in pebble, one per event-time window with activities."),
		sealed:     d("sealed_segments", "Segments in pebble whose index is on disk and current."),
		archives:   d("archives", "Archive files."),
		diskBytes:  d("disk_bytes", "Bytes on disk, by tier: the pebble database and the archive files.", "tier"),
		cacheBytes: d("cache_bytes", "Memory held by archived data loaded for queries."),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.activities, c.archived, c.segments, c.sealed, c.archives, c.diskBytes, c.cacheBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	st, err := c.s.Counts(ctx)
	if err != nil {
		gauge(ch, c.up, 0)
		return
	}
	gauge(ch, c.up, 1)
	gauge(ch, c.activities, float64(st.Activities))
	gauge(ch, c.archived, float64(st.ArchivedActivities))
	gauge(ch, c.segments, float64(st.Segments))
	gauge(ch, c.sealed, float64(st.SealedSegments))
	gauge(ch, c.archives, float64(st.Archives))
	gauge(ch, c.diskBytes, float64(st.DiskBytes), "pebble")
	gauge(ch, c.diskBytes, float64(st.ArchiveBytes), "archive")
	gauge(ch, c.cacheBytes, float64(st.CacheBytes))
}

// gauge sends one gauge sample, or the error that prevented it.
func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

// recorder keeps the status of an answer for the metrics and for errors that
// come after it began.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *recorder) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeKind tells instrument how to record a route.
type routeKind int

const (
	routePlain  routeKind = iota
	routeAppend           // an answer of 400 or more is a rejected append
	routeStream           // a 200 is a stream: its length is not a latency
)

// instrument returns the handler of one route: it bounds the body, runs fn,
// answers its error and records the request's latency under route, or, for
// a stream that was answered 200, its length in the stream histogram.
func (h *handler) instrument(route string, kind routeKind, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
		rec := &recorder{ResponseWriter: w}
		if err := fn(rec, r); err != nil {
			h.fail(rec, r, err)
		}
		status := rec.status
		if !rec.wrote {
			status = http.StatusOK
		}
		code := strconv.Itoa(status)
		if kind == routeStream && status == http.StatusOK {
			h.m.streams.WithLabelValues(route).Observe(time.Since(start).Seconds())
		} else {
			h.m.duration.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
		}
		if kind == routeAppend && status >= http.StatusBadRequest {
			h.m.rejected.WithLabelValues(code).Inc()
		}
	})
}
