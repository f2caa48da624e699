// Command bench loads a generated data set of platform activity into a
// fresh store, runs the common queries and prints what it measured.
//
//	go run ./bench            # 100,000 activities in a temporary directory
//	go run ./bench -n 1000000 -dir /tmp/as -keep
package main

import (
	"context"
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
	s, err := activitystore.Open(dir, &activitystore.Options{NoSync: true, Now: now})
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

	fmt.Printf("\nquery latency over %d runs (p50 / p99):\n", runs)
	heavy := g.UserName(0)
	queries := []struct {
		name string
		run  func() error
	}{
		{"Recent(50)", func() error { _, err := s.Recent(ctx, 50, 0); return err }},
		{"type=user.login newest 50", func() error { _, err := s.Query().Types("user.login").All(ctx); return err }},
		{"type=security.alert newest 50", func() error { _, err := s.Query().Types("security.alert").All(ctx); return err }},
		{"user=heaviest newest 50", func() error { _, err := s.Query().Users(heavy).All(ctx); return err }},
		{"type∧user newest 50", func() error { _, err := s.Query().Types("model.deploy").Users(heavy).All(ctx); return err }},
		{"newest 50 after skip 10000", func() error { _, err := s.Query().Skip(10000).All(ctx); return err }},
		{"count type=user.login 24h", func() error { _, err := s.Query().Types("user.login").Since(day).Count(ctx); return err }},
	}
	for _, q := range queries {
		lat := make([]time.Duration, runs)
		for i := range lat {
			t0 := time.Now()
			if err := q.run(); err != nil {
				return err
			}
			lat[i] = time.Since(t0)
		}
		slices.Sort(lat)
		fmt.Printf("  %-30s %9s / %9s\n", q.name, lat[len(lat)/2].Round(100*time.Nanosecond), lat[len(lat)*99/100].Round(100*time.Nanosecond))
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nstore: %d activities in %d segments, %.1f disk bytes/activity, %.2f index bytes/activity (type %.2f, user %.2f)\n",
		st.Activities, st.Segments, float64(st.DiskBytes)/float64(st.Activities), float64(st.IndexBytes)/float64(st.Activities),
		float64(st.IndexBytesByField["type"])/float64(st.Activities), float64(st.IndexBytesByField["user_id"])/float64(st.Activities))
	return s.Verify(ctx)
}
