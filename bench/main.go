// Command bench loads a generated data set of platform activity into a
// fresh store, runs the common queries and prints what it measured.
//
//	go run ./bench            # 100,000 activities in a temporary directory
//	go run ./bench -n 1000000 -dir /tmp/as -keep
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
)

func main() {
	n := flag.Int("n", 100_000, "activities to generate")
	seed := flag.Uint64("seed", 1, "generator seed")
	dir := flag.String("dir", "", "store directory (default: a temporary one)")
	keep := flag.Bool("keep", false, "keep the store directory")
	runs := flag.Int("runs", 1000, "runs per query")
	flag.Parse()
	if err := run(*n, *seed, *dir, *keep, *runs); err != nil {
		log.Fatal(err)
	}
}

func run(n int, seed uint64, dir string, keep bool, runs int) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "activitystore-bench")
		if err != nil {
			return err
		}
		dir = d
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return end.Add(time.Hour) }
	// ColdAfter of 1ns: the compaction phase archives every window.
	s, err := activitystore.Open(dir, &activitystore.Options{NoSync: true, Now: now, ColdAfter: time.Nanosecond})
	if err != nil {
		return err
	}
	defer s.Close()

	g := gen.New(gen.Config{N: n, Seed: seed, End: end})
	fmt.Printf("activitystore demo: %d generated activities, batches of 1000, NoSync, in %s\n\n", n, dir)
	batch := make([]activitystore.Activity, 0, 1000)
	var a activitystore.Activity
	start := time.Now()
	for g.Next(&a) {
		a.Details = slices.Clone(a.Details)
		batch = append(batch, a)
		if len(batch) == cap(batch) {
			if _, err := s.Append(ctx, batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if _, err := s.Append(ctx, batch...); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Printf("ingest        %8.0f activities/s (%s)\n", float64(n)/el.Seconds(), el.Round(time.Millisecond))

	recent, err := s.Recent(ctx, 5, 0)
	if err != nil {
		return err
	}
	fmt.Println("\nnewest 5:")
	for _, a := range recent {
		user := a.UserID
		if user == "" {
			user = "(system)"
		}
		fmt.Printf("  %s  %-18s %-12s %s\n", a.Time.Format(time.RFC3339), a.Type, user, a.Resource)
	}

	fmt.Println("\nlast 24h by type:")
	day := end.Add(-24 * time.Hour)
	for _, k := range gen.Kinds[:6] {
		c, err := s.Query().Types(k.Type).Since(day).Count(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("  %-18s %7d\n", k.Type, c)
	}

	heavy := g.UserName(0)
	light := g.UserName(2000)
	queries := []struct {
		name string
		run  func() error
	}{
		{"Recent(50)", func() error { _, err := s.Recent(ctx, 50, 0); return err }},
		{"type=user.login newest 50", func() error { _, err := s.Query().Types("user.login").All(ctx); return err }},
		{"type=security.alert newest 50", func() error { _, err := s.Query().Types("security.alert").All(ctx); return err }},
		{"user=heaviest newest 50", func() error { _, err := s.Query().Users(heavy).All(ctx); return err }},
		{"user=light newest 50", func() error { _, err := s.Query().Users(light).All(ctx); return err }},
		{"type∧user newest 50", func() error { _, err := s.Query().Types("model.deploy").Users(heavy).All(ctx); return err }},
		{"newest 50 after skip 10000", func() error { _, err := s.Query().Skip(10000).All(ctx); return err }},
		{"count type=user.login 24h", func() error { _, err := s.Query().Types("user.login").Since(day).Count(ctx); return err }},
	}
	measure := func() ([][3]time.Duration, error) {
		out := make([][3]time.Duration, len(queries))
		for qi, q := range queries {
			lat := make([]time.Duration, runs)
			for i := range lat {
				t0 := time.Now()
				if err := q.run(); err != nil {
					return nil, err
				}
				lat[i] = time.Since(t0)
			}
			first := lat[0]
			slices.Sort(lat)
			out[qi] = [3]time.Duration{first, lat[len(lat)/2], lat[len(lat)*99/100]}
		}
		return out, nil
	}
	hot, err := measure()
	if err != nil {
		return err
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nstore: %d activities in %d segments, %.1f disk bytes/activity, %.2f index bytes/activity (type %.2f, user %.2f)\n",
		st.Activities, st.Segments, float64(st.DiskBytes)/float64(st.Activities), float64(st.IndexBytes)/float64(st.Activities),
		float64(st.IndexBytesByField["type"])/float64(st.Activities), float64(st.IndexBytesByField["user_id"])/float64(st.Activities))
	if err := s.Verify(ctx); err != nil {
		return err
	}

	// Compaction: every window into an archive file.
	rawJSON, err := jsonBytes(n, seed, end)
	if err != nil {
		return err
	}
	start = time.Now()
	if err := s.Compact(ctx); err != nil {
		return err
	}
	el = time.Since(start)
	if st, err = s.Stats(ctx); err != nil {
		return err
	}
	fmt.Printf("\ncompaction: %d activities into %d archives in %s: %.0f activities/s\n",
		st.ArchivedActivities, st.Archives, el.Round(time.Millisecond), float64(st.ArchivedActivities)/el.Seconds())
	fmt.Printf("archives: %d bytes, %.1f bytes/activity, %.4f of the %d bytes of JSON lines (%.0f bytes/activity)\n",
		st.ArchiveBytes, float64(st.ArchiveBytes)/float64(st.ArchivedActivities), float64(st.ArchiveBytes)/float64(rawJSON), rawJSON, float64(rawJSON)/float64(n))
	cold, err := measure()
	if err != nil {
		return err
	}
	fmt.Printf("\nquery latency over %d runs: first run, p50, p99\n", runs)
	fmt.Printf("  %-30s %31s   %31s\n", "", "hot (pebble)", "archived")
	for qi, q := range queries {
		h, c := hot[qi], cold[qi]
		fmt.Printf("  %-30s %9s %9s %9s   %9s %9s %9s\n", q.name, h[0].Round(time.Microsecond), h[1].Round(100*time.Nanosecond), h[2].Round(100*time.Nanosecond),
			c[0].Round(time.Microsecond), c[1].Round(100*time.Nanosecond), c[2].Round(100*time.Nanosecond))
	}
	if st, err = s.Stats(ctx); err != nil {
		return err
	}
	fmt.Printf("archive cache: %.1f MB\n", float64(st.CacheBytes)/1e6)
	return s.Verify(ctx)
}

// jsonBytes returns the sizees returns the size of the data set as JSON lines, the form a
// plain log of it would take.
func jsonBytes(n int, seed uint64, end time.Time) (int64, error) {
	g := gen.New(gen.Config{N: n, Seed: seed, End: end})
	var a activitystore.Activity
	var total int64
	for g.Next(&a) {
		a.ID = activitystore.ID{0x01} // any ID: its text is as long as a real one's
		b, err := json.Marshal(a)
		if err != nil {
			return 0, err
		}
		total += int64(len(b)) + 1
	}
	return total, nil
}
