package activitystore_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/gen"
	"github.com/activitystore/activitystore/internal/s3test"
)

var benchN = flag.Int("bench.n", 1_000_000, "activities in the store the query benchmarks run on")

var benchRecordCache = flag.Int64("bench.recordcache", 0, "Options.RecordCacheBytes of the query benchmarks' stores (0: the default, -1: none)")

var benchEnd = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func benchNow() time.Time { return benchEnd.Add(time.Hour) }

// genBatches returns n generated activities in batches of size.
func genBatches(n, size int, seed uint64) [][]activitystore.Activity {
	g := gen.New(gen.Config{N: n, Seed: seed, End: benchEnd})
	var out [][]activitystore.Activity
	var a activitystore.Activity
	cur := make([]activitystore.Activity, 0, size)
	for g.Next(&a) {
		a.Details = slices.Clone(a.Details)
		cur = append(cur, a)
		if len(cur) == size {
			out = append(out, cur)
			cur = make([]activitystore.Activity, 0, size)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// builtStore is a store of *benchN generated activities, built once per
// test binary.
type builtStore struct {
	once sync.Once
	s    *activitystore.Store
	dir  string
	err  error
}

var (
	benchStore builtStore // sealed, as a store in steady state is
	archStore  builtStore // every window archived
)

// get builds the store on first use: ingest, then seal or archive
// everything, then let pebble settle.
func (bs *builtStore) get(b *testing.B, archived bool) *activitystore.Store {
	bs.once.Do(func() {
		bs.dir, bs.err = os.MkdirTemp("", "activitystore-bench")
		if bs.err != nil {
			return
		}
		opts := &activitystore.Options{NoSync: true, Now: benchNow, SealEvery: time.Hour, RecordCacheBytes: *benchRecordCache}
		if archived {
			opts.ColdAfter = time.Nanosecond
		}
		s, err := activitystore.Open(bs.dir, opts)
		if err != nil {
			bs.err = err
			return
		}
		bs.s = s
		ctx := context.Background()
		for _, batch := range genBatches(*benchN, 1000, 1) {
			if _, err := s.Append(ctx, batch...); err != nil {
				bs.err = err
				return
			}
		}
		if archived {
			bs.err = s.Compact(ctx)
		} else {
			bs.err = activitystore.SealDue(s, ctx)
		}
		if bs.err == nil {
			bs.err = activitystore.Settle(s)
		}
		runtime.GC()
	})
	if bs.err != nil {
		b.Fatal(bs.err)
	}
	return bs.s
}

// loadedStore returns the sealed bench store.
func loadedStore(b *testing.B) *activitystore.Store { return benchStore.get(b, false) }

func TestMain(m *testing.M) {
	// The S3 tests' server, built before the tests' timeout starts.
	if err := s3test.Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	activitystore.StopSharedS3()
	for _, bs := range []*builtStore{&benchStore, &archStore} {
		if bs.s != nil {
			bs.s.Close()
		}
		if bs.dir != "" {
			os.RemoveAll(bs.dir)
		}
	}
	os.Exit(code)
}

// BenchmarkAppend appends batches of 1000 generated activities with 1 and
// 4 writers, with and without Sync. One op is one batch. Each pass over the
// generated set moves its times 31 days on, so the store sees a live stream
// (with the generator's late arrivals), not a re-import of old history.
func BenchmarkAppend(b *testing.B) {
	batches := genBatches(100_000, 1000, 2)
	base := make([][]time.Time, len(batches))
	for i, batch := range batches {
		for _, a := range batch {
			base[i] = append(base[i], a.Time)
		}
	}
	const cycle = 31 * 24 * time.Hour
	farNow := func() time.Time { return benchEnd.Add(100 * 365 * 24 * time.Hour) }
	for _, synced := range []bool{false, true} {
		for _, writers := range []int{1, 4} {
			name := fmt.Sprintf("sync=%v/writers=%d", synced, writers)
			b.Run(name, func(b *testing.B) {
				s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: !synced, Now: farNow, SealEvery: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ctx := context.Background()
				b.ReportAllocs()
				b.SetBytes(1000 * 300)
				start := time.Now()
				b.ResetTimer()
				var wg sync.WaitGroup
				work := make(chan int, writers)
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range work {
							k, batch := i/len(batches), batches[i%len(batches)]
							for j := range batch {
								batch[j].Time = base[i%len(batches)][j].Add(time.Duration(k) * cycle)
							}
							if _, err := s.Append(ctx, batch...); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				for i := 0; i < b.N; i++ {
					work <- i
				}
				close(work)
				wg.Wait()
				b.ReportMetric(float64(b.N*1000)/time.Since(start).Seconds(), "activities/s")
			})
		}
	}
}

// BenchmarkAppendDense loads the first 200,000 activities (fewer when
// -bench.n is smaller) of a 10M data set (about half a day: all in one
// window of the default width) into a fresh store with 1 and 4 writers taking
// batches of 1000 in turn, as the bench's extra ingest rows do at 10M.
// Overlapping batches of concurrent writers make activities late in one
// large window. One op is the whole load.
func BenchmarkAppendDense(b *testing.B) {
	g := gen.New(gen.Config{N: 10_000_000, Seed: 1, End: benchEnd})
	var batches [][]activitystore.Activity
	var a activitystore.Activity
	cur := make([]activitystore.Activity, 0, 1000)
	for len(batches) < min(200, *benchN/1000) && g.Next(&a) {
		a.Details = slices.Clone(a.Details)
		if cur = append(cur, a); len(cur) == cap(cur) {
			batches = append(batches, cur)
			cur = make([]activitystore.Activity, 0, 1000)
		}
	}
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			for range b.N {
				b.StopTimer()
				s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: true, Now: func() time.Time { return benchEnd.Add(time.Hour) }})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				var wg sync.WaitGroup
				work := make(chan []activitystore.Activity, writers)
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for batch := range work {
							if _, err := s.Append(context.Background(), batch...); err != nil {
								b.Error(err)
							}
						}
					}()
				}
				for _, batch := range batches {
					work <- batch
				}
				close(work)
				wg.Wait()
				total += time.Since(start)
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*1000*len(batches))/total.Seconds(), "activities/s")
		})
	}
}

// BenchmarkSeal appends 100,000 generated activities (about three days,
// with the generator's late arrivals) to a fresh store, flushes pebble's
// memtable, then seals every window; only the seals are timed. One op is
// one store's seals.
func BenchmarkSeal(b *testing.B) {
	batches := genBatches(100_000, 1000, 3)
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		s, err := activitystore.Open(b.TempDir(), &activitystore.Options{NoSync: true, Now: benchNow, SealEvery: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range batches {
			if _, err := s.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
		// The records are on disk, as when a window goes cold.
		if err := activitystore.Flush(s); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := activitystore.SealDue(s, ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkQuery runs the common queries on the loaded store and reports
// their latency percentiles.
func BenchmarkQuery(b *testing.B) { runQueries(b, loadedStore(b)) }

// BenchmarkQueryArchived runs the same queries on a store holding the same
// activities with every window archived.
func BenchmarkQueryArchived(b *testing.B) { runQueries(b, archStore.get(b, true)) }

func runQueries(b *testing.B, s *activitystore.Store) {
	ctx := context.Background()
	heavy := "user-00000"
	light := "user-02000"
	lightN := 0
	day := benchEnd.Add(-24 * time.Hour)
	queries := []struct {
		name string
		run  func() (int, error)
	}{
		{"Recent50", func() (int, error) { a, err := s.Recent(ctx, 50, 0); return len(a), err }},
		{"type=user.login/newest50", func() (int, error) {
			p, err := s.Query().Types("user.login").All(ctx)
			return len(p.Activities), err
		}},
		{"type=security.alert/newest50", func() (int, error) {
			p, err := s.Query().Types("security.alert").All(ctx)
			return len(p.Activities), err
		}},
		{"user=heaviest/newest50", func() (int, error) {
			p, err := s.Query().Users(heavy).All(ctx)
			return len(p.Activities), err
		}},
		{"user=light/newest50", func() (int, error) {
			p, err := s.Query().Users(light).All(ctx)
			return len(p.Activities), err
		}},
		{"user=light-random/newest50", func() (int, error) {
			lightN++ // a different light user each run, as the bench suite draws them
			p, err := s.Query().Users(fmt.Sprintf("user-%05d", 2000+lightN%1000)).All(ctx)
			return len(p.Activities), err
		}},
		{"type∧user/newest50", func() (int, error) {
			p, err := s.Query().Types("model.query").Users(heavy).All(ctx)
			return len(p.Activities), err
		}},
		{"oneday/type=model.query/newest50", func() (int, error) {
			d := day.Add(-time.Duration(1+lightN%20) * 24 * time.Hour)
			lightN++
			p, err := s.Query().Types("model.query").Since(d).Until(d.Add(24 * time.Hour)).All(ctx)
			return len(p.Activities), err
		}},
		{"skip10000/newest50", func() (int, error) {
			p, err := s.Query().Skip(10000).All(ctx)
			return len(p.Activities), err
		}},
		{"count/type=user.login/24h", func() (int, error) {
			return s.Query().Types("user.login").Since(day).Count(ctx)
		}},
		{"timeline/1h/7d", func() (int, error) {
			bs, err := s.Query().Since(benchEnd.Add(-7*24*time.Hour)).Until(benchEnd).Timeline(ctx, time.Hour)
			return len(bs), err
		}},
		{"timeline/type=user.login/1m/24h", func() (int, error) {
			bs, err := s.Query().Types("user.login").Since(day).Until(benchEnd).Timeline(ctx, time.Minute)
			return len(bs), err
		}},
		{"countby/type/7d", func() (int, error) {
			vs, err := s.Query().Since(benchEnd.Add(-7*24*time.Hour)).CountBy(ctx, "type")
			return len(vs), err
		}},
		{"countby/user/type=model.deploy", func() (int, error) {
			vs, err := s.Query().Types("model.deploy").CountBy(ctx, "user_id")
			return len(vs), err
		}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			var n int
			for b.Loop() {
				t0 := time.Now()
				k, err := q.run()
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				n = k
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(n), "results")
		})
	}
}

var benchArchives = flag.Int("bench.archives", 2000, "archive files in the store BenchmarkOpenArchives opens")

// BenchmarkOpenArchives opens a store holding *benchArchives archive files
// (one-second windows of 20 activities each). Open reads one small record
// per archive and no file.
func BenchmarkOpenArchives(b *testing.B) {
	dir := b.TempDir()
	start := benchEnd.Add(-time.Duration(*benchArchives) * time.Second)
	opts := &activitystore.Options{NoSync: true, Now: benchNow, SegmentWidth: time.Second, ColdAfter: time.Nanosecond}
	s, err := activitystore.Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := genBatches(*benchArchives*20, *benchArchives*20, 3)[0]
	for i := range batch {
		batch[i].Time = start.Add(time.Duration(i) * time.Second / 20)
	}
	if _, err := s.Append(ctx, batch...); err != nil {
		b.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		b.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := activitystore.Open(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Archives), "archives")
}
