package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
)

// BenchmarkList serves GET /v1/activities?type=T&limit=50 from a store of
// 50,000 generated activities, without a network: the handler's own cost.
func BenchmarkList(b *testing.B) {
	s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := gen.New(gen.Config{N: 50_000, End: time.Now().UTC().Add(-time.Hour)})
	batch := make([]activitystore.Activity, 0, 1000)
	var a activitystore.Activity
	for g.Next(&a) {
		a.Details = append([]byte(nil), a.Details...) // the generator reuses its buffer
		batch = append(batch, a)
		if len(batch) == cap(batch) {
			if _, err := s.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	h := New(s, Options{})
	for _, path := range []string{"/v1/activities?type=model.query&limit=50", "/activity/activities/?limit=50"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
				b.SetBytes(int64(w.Body.Len()))
			}
		})
	}
}

// BenchmarkPostNDJSON posts 5,000 generated activities as NDJSON per op into
// a store without fsync: the handler's decoding, validation and append.
func BenchmarkPostNDJSON(b *testing.B) {
	s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := gen.New(gen.Config{N: 5000, End: time.Now().UTC().Add(-time.Hour)})
	var body []byte
	var a activitystore.Activity
	for g.Next(&a) {
		body = append(a.AppendJSON(body), '\n')
	}
	h := New(s, Options{})
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/activities", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatal(w.Code, w.Body.String())
		}
	}
	b.ReportMetric(float64(b.N)*5000/b.Elapsed().Seconds(), "activities/s")
}

// BenchmarkMetricsScrape scrapes /metrics of a store whose open window
// holds 300,000 distinct resources: a scrape reads counters, so its cost
// does not grow with them.
func BenchmarkMetricsScrape(b *testing.B) {
	s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	at := time.Now().UTC().Add(-time.Minute)
	batch := make([]activitystore.Activity, 1000)
	for k := 0; k < 300; k++ {
		for i := range batch {
			batch[i] = activitystore.Activity{Type: "t", UserID: fmt.Sprintf("u-%d", i%100), Resource: fmt.Sprintf("r-%d-%d", k, i), Time: at}
		}
		if _, err := s.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	h := New(s, Options{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
