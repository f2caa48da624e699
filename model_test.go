package activitystore

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	modelOps  = flag.Int("model.ops", 2500, "operations of the randomized model test")
	modelSeed = flag.Uint64("model.seed", 1, "seed of the randomized model test")
)

// model is the plain in-memory reference the store is compared with.
type model struct {
	acts []Activity
}

type modelQuery struct {
	vals         [numFields][]string
	since, until *time.Time
	skip, limit  int
	after        ID
}

func (mq *modelQuery) build(s *Store) *Query {
	q := s.Query()
	if mq.vals[fieldType] != nil {
		q.Types(mq.vals[fieldType]...)
	}
	if mq.vals[fieldUser] != nil {
		q.Users(mq.vals[fieldUser]...)
	}
	if mq.vals[fieldModule] != nil {
		q.Modules(mq.vals[fieldModule]...)
	}
	if mq.vals[fieldAction] != nil {
		q.Actions(mq.vals[fieldAction]...)
	}
	if mq.vals[fieldResource] != nil {
		q.Resources(mq.vals[fieldResource]...)
	}
	if mq.since != nil {
		q.Since(*mq.since)
	}
	if mq.until != nil {
		q.Until(*mq.until)
	}
	return q.Skip(mq.skip).Limit(mq.limit)
}

// matches returns every match newest first, ignoring skip and limit.
func (m *model) matches(mq *modelQuery) []Activity {
	var out []Activity
	for _, a := range m.acts {
		ok := true
		for f, l := range a.labels() {
			if mq.vals[f] != nil && !slices.Contains(mq.vals[f], l) {
				ok = false
			}
		}
		if mq.since != nil && a.Time.Before(*mq.since) || mq.until != nil && !a.Time.Before(*mq.until) {
			ok = false
		}
		if !mq.after.IsZero() && a.ID.Compare(mq.after) >= 0 {
			ok = false
		}
		if ok {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Activity) int { return b.ID.Compare(a.ID) })
	return out
}

var (
	mTypes     = []string{"user.login", "model.deploy", "lab.create", "data.ingest", "security.alert", "service.status"}
	mUsers     = []string{"", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11"}
	mModules   = []string{"auth", "models", "lab", "data"}
	mActions   = []string{"create", "deploy", "delete", "login"}
	mResources = []string{"", "model/1", "model/2", "lab/7", "dataset/3"}
)

// countBy counts the matches per value of f, most frequent first, ties by
// value.
func (m *model) countBy(mq *modelQuery, f field) []ValueCount {
	n := map[string]int{}
	for _, a := range m.matches(mq) {
		n[a.labels()[f]]++
	}
	out := []ValueCount{}
	for v, c := range n {
		out = append(out, ValueCount{Value: v, Count: c})
	}
	slices.SortFunc(out, func(a, b ValueCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out
}

// timeline counts the matches per bucket: from the bucket of Since, or of
// the oldest match, to the bucket of Until's last nanosecond, or of the
// newest match.
func (m *model) timeline(mq *modelQuery, b time.Duration) []Bucket {
	ms := m.matches(mq)
	out := []Bucket{}
	bucketOf := func(t time.Time) int64 { return t.UnixNano() / int64(b) }
	var first, last int64
	switch {
	case mq.since != nil:
		first = bucketOf(*mq.since)
	case len(ms) > 0:
		first = bucketOf(ms[len(ms)-1].Time)
	default:
		return out
	}
	switch {
	case mq.until != nil:
		if mq.since != nil && !mq.until.After(*mq.since) {
			return out
		}
		last = bucketOf(mq.until.Add(-1))
	case len(ms) > 0:
		last = bucketOf(ms[0].Time)
	default:
		return out
	}
	for k := first; k <= last; k++ {
		out = append(out, Bucket{Start: time.Unix(0, k*int64(b)).UTC()})
	}
	for _, a := range ms {
		if k := bucketOf(a.Time) - first; k >= 0 && k < int64(len(out)) {
			out[k].Count++
		}
	}
	return out
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func pickSome(r *rand.Rand, xs []string) []string {
	n := 1 + r.IntN(3)
	out := make([]string, 0, n)
	for range n {
		out = append(out, pick(r, xs))
	}
	if r.IntN(10) == 0 {
		out = append(out, "no-such-value")
	}
	return out
}

func equalActs(t *testing.T, want, got []Activity, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, len(want), len(got), msgAndArgs...)
	for i := range want {
		w, g := want[i], got[i]
		require.Equal(t, w.ID, g.ID, msgAndArgs...)
		require.True(t, w.Time.Equal(g.Time), msgAndArgs...)
		require.Equal(t, []string{w.Type, w.UserID, w.Module, w.Action, w.APICall, w.Resource, string(w.Details)},
			[]string{g.Type, g.UserID, g.Module, g.Action, g.APICall, g.Resource, string(g.Details)}, msgAndArgs...)
	}
}

// TestModel runs random appends, seals, renumbers and reopens interleaved
// with random queries, comparing every answer with the in-memory model.
func TestModel(t *testing.T) {
	// Renumbering often keeps late lists short; never renumbering lets them
	// grow so that queries merge long ones.
	// Checkpoints of open segments now and then, or at every seal pass.
	// Sealed segments keep the IDs of sparse values inline, or never.
	for _, c := range []struct{ lateMin, cache, checkpoint, inline int }{{16, 4 << 10, 1, 0}, {1 << 30, 200 << 10, 1 << 16, -1}} {
		lm := c.lateMin
		t.Run(fmt.Sprintf("lateMin=%d,cache=%d,checkpoint=%d,inline=%d", lm, c.cache, c.checkpoint, c.inline), func(t *testing.T) {
			ops := *modelOps / 2
			if testing.Short() {
				ops /= 5
			}
			runModel(t, ops, lm, c.cache, c.checkpoint, c.inline, nil)
		})
	}
}

// runModel runs the model test; with s3 set the archives go to that bucket,
// and at the end a reader over the bucket answers like the model once every
// window is archived.
func runModel(t *testing.T, ops, lateMin, cache, checkpoint, inline int, s3 *S3Options) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(*modelSeed, 7))
	// A small cache, so that pieces of sealed segments, archived blocks and
	// indexes are evicted and read again.
	opts := &Options{SegmentWidth: 20 * time.Minute, SealAfter: time.Minute, ColdAfter: 30 * time.Minute, CacheBytes: int64(cache), lateMin: lateMin, checkpoint: checkpoint, inline: inline, blockBytes: 1500, S3: s3}
	s, dir, clock := openTest(t, opts)
	opts.Now = clock.Now
	opts.SealEvery = time.Hour
	m := &model{}
	head := testBase // the "current" time, advancing
	span := func() time.Duration { return head.Sub(testBase) + time.Minute }
	var stamps []time.Time

	randTime := func() time.Time {
		switch r.IntN(10) {
		case 0, 1: // late arrival, up to 10 minutes back
			return head.Add(-time.Duration(r.Int64N(int64(10 * time.Minute))))
		case 2: // history import, anywhere
			return testBase.Add(time.Duration(r.Int64N(int64(span()))))
		case 3: // an exact duplicate timestamp
			if len(stamps) > 0 {
				return pick(r, stamps)
			}
		}
		head = head.Add(time.Duration(r.Int64N(int64(20 * time.Second))))
		return head
	}
	randQuery := newRandQuery(r, span, &stamps)

	for op := 0; op < ops; op++ {
		switch k := r.IntN(100); {
		case k < 45:
			n := 1 + r.IntN(40)
			batch := make([]Activity, n)
			for i := range batch {
				at := randTime()
				stamps = append(stamps, at)
				batch[i] = Activity{
					Time: at, Type: pick(r, mTypes), UserID: pick(r, mUsers), Module: pick(r, mModules),
					Action: pick(r, mActions), Resource: pick(r, mResources), APICall: "POST /x",
					Details: json.RawMessage(fmt.Sprintf(`{"op":%d,"i":%d}`, op, i)),
				}
				if r.IntN(20) == 0 {
					batch[i].Details = nil
				}
			}
			ids := mustAppend(t, s, batch...)
			for i := range batch {
				batch[i].ID = ids[i]
				batch[i].Time = batch[i].Time.UTC()
			}
			m.acts = append(m.acts, batch...)
		case k < 47:
			clock.Set(head.Add(time.Duration(r.Int64N(int64(time.Hour)))))
			require.NoError(t, s.sealDue(ctx))
		case k < 48:
			require.NoError(t, s.Close())
			var err error
			s, err = Open(dir, opts)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
		case k < 49:
			require.NoError(t, s.Verify(ctx))
		case k < 52: // archive cold windows, merging late arrivals into archives
			clock.Set(head.Add(time.Duration(r.Int64N(int64(time.Hour)))))
			require.NoError(t, s.Compact(ctx))
		case k < 53 && r.IntN(3) == 0: // retention: drop the oldest windows
			cut := testBase.Add(time.Duration(r.Int64N(int64(span() / 4))))
			require.NoError(t, s.DropBefore(ctx, cut))
			w := s.width
			m.acts = slices.DeleteFunc(m.acts, func(a Activity) bool {
				return (a.Time.UnixNano()/w+1)*w <= cut.UnixNano()
			})
		default:
			checkQuery(t, r, s, m, randQuery, op, k)
		}
	}
	require.NoError(t, s.Verify(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, len(m.acts), st.Activities)
	require.Positive(t, st.Archives, "the run archived nothing")
	t.Logf("%d activities, %d segments, %d archives (%d activities)", st.Activities, st.Segments, st.Archives, st.ArchivedActivities)
	if s3 == nil {
		return
	}
	clock.Set(head.Add(48 * time.Hour))
	require.NoError(t, s.Compact(ctx))
	rd, err := OpenReader(&Options{S3: s3, CacheBytes: int64(cache), PollEvery: -1})
	require.NoError(t, err)
	defer rd.Close()
	for op := range ops / 4 {
		checkQuery(t, r, rd, m, randQuery, op, 52+r.IntN(48))
	}
	require.NoError(t, rd.Verify(ctx))
	rst, err := rd.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, len(m.acts), rst.Activities)
}

// newRandQuery returns a maker of random queries over the model's values and
// the time range span() from testBase, at times of stamps now and then.
func newRandQuery(r *rand.Rand, span func() time.Duration, stamps *[]time.Time) func() *modelQuery {
	return func() *modelQuery {
		mq := &modelQuery{limit: 1 + r.IntN(30)}
		for f := range numFields {
			if r.IntN(4) != 0 {
				continue
			}
			switch field(f) {
			case fieldType:
				mq.vals[f] = pickSome(r, mTypes)
			case fieldUser:
				mq.vals[f] = pickSome(r, mUsers)
			case fieldModule:
				mq.vals[f] = pickSome(r, mModules)
			case fieldAction:
				mq.vals[f] = pickSome(r, mActions)
			case fieldResource:
				mq.vals[f] = pickSome(r, mResources)
			}
		}
		if r.IntN(3) == 0 {
			t0 := testBase.Add(time.Duration(r.Int64N(int64(span()))))
			if r.IntN(5) == 0 && len(*stamps) > 0 {
				t0 = pick(r, *stamps)
			}
			mq.since = &t0
		}
		if r.IntN(3) == 0 {
			t1 := testBase.Add(time.Duration(r.Int64N(int64(span()))))
			if mq.since != nil && t1.Before(*mq.since) {
				t1 = *mq.since
			}
			mq.until = &t1
		}
		if r.IntN(3) == 0 {
			mq.skip = r.IntN(40)
		}
		return mq
	}
}

// checkQuery runs a random query of kind k (52 to 99) on s and compares its
// answer with the model's.
func checkQuery(t *testing.T, r *rand.Rand, s *Store, m *model, randQuery func() *modelQuery, op, k int) {
	ctx := context.Background()
	switch {
	case k < 75:
		mq := randQuery()
		want := m.matches(mq)
		page, err := mq.build(s).All(ctx)
		require.NoError(t, err)
		exp := want[min(mq.skip, len(want)):]
		more := len(exp) > mq.limit
		exp = exp[:min(mq.limit, len(exp))]
		equalActs(t, exp, page.Activities, "op %d query %+v", op, mq)
		require.Equal(t, more, page.Next != "", "op %d: next cursor", op)
	case k < 85: // cursor walk over a whole query
		mq := randQuery()
		mq.limit = 1 + r.IntN(7)
		if len(m.acts) > 2000 {
			mq.limit *= 20
		}
		want := m.matches(mq)
		want = want[min(mq.skip, len(want)):]
		var got []Activity
		q := mq.build(s)
		for pages := 0; ; pages++ {
			require.LessOrEqual(t, pages, len(want)/mq.limit+1, "op %d: too many pages", op)
			page, err := q.All(ctx)
			require.NoError(t, err)
			got = append(got, page.Activities...)
			if page.Next == "" {
				break
			}
			q.Skip(0).After(page.Next)
		}
		equalActs(t, want, got, "op %d cursor walk %+v", op, mq)
	case k < 88:
		mq := randQuery()
		n, err := mq.build(s).Count(ctx)
		require.NoError(t, err)
		require.Equal(t, len(m.matches(mq)), n, "op %d count %+v", op, mq)
	case k < 90:
		mq := randQuery()
		f := field(r.IntN(int(numFields)))
		got, err := mq.build(s).CountBy(ctx, f.String())
		require.NoError(t, err)
		require.Equal(t, m.countBy(mq, f), got, "op %d count by %s %+v", op, f, mq)
	case k < 92:
		mq := randQuery()
		b := pick(r, []time.Duration{13 * time.Second, 7 * time.Minute, time.Hour, 24 * time.Hour})
		got, err := mq.build(s).Timeline(ctx, b)
		require.NoError(t, err)
		require.Equal(t, m.timeline(mq, b), got, "op %d timeline by %s %+v", op, b, mq)
	case k < 96:
		mq := randQuery()
		mq.skip = 0
		var got []Activity
		for a, err := range mq.build(s).Limit(0).Iter(ctx) {
			require.NoError(t, err)
			got = append(got, a)
		}
		equalActs(t, m.matches(mq), got, "op %d iter %+v", op, mq)
	default:
		if len(m.acts) == 0 {
			return
		}
		a := pick(r, m.acts)
		g, err := s.Get(ctx, a.ID)
		require.NoError(t, err)
		equalActs(t, []Activity{a}, []Activity{g})
	}
}
