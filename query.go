package activitystore

import (
	"context"
	"encoding/base64"
	"fmt"
	"iter"
	"time"
)

// Query limits.
const (
	// DefaultLimit is the page size when Limit is not set.
	DefaultLimit = 50
	// MaxLimit is the largest page size All accepts.
	MaxLimit = 10_000
)

// iterChunk is the most activities Iter reads at a time, and iterBytes about
// the most bytes of records: after the first chunk, the next are sized by
// the records read so far, so that an Iter over activities with large
// details holds about 1 MiB of them at a time.
const (
	iterChunk = 256
	iterBytes = 1 << 20
)

// Query selects activities, newest first by event time, ties by ID. Build it
// with Store.Query and the methods below, then run it with All, Iter or Count.
// Values given to one method are ORed; different methods are ANDed. A Query
// is a builder: it is not safe for concurrent use while it is being changed,
// but running it does not change it, so one Query may be run many times.
type Query struct {
	s                  *Store
	vals               [numFields][]string
	since, until       time.Time
	hasSince, hasUntil bool
	limit, skip        int
	after              string
	err                error
}

// Query starts a query that matches every activity.
func (s *Store) Query() *Query { return &Query{s: s} }

func (q *Query) add(f field, v []string) *Query {
	q.vals[f] = append(q.vals[f], v...)
	if q.vals[f] == nil {
		q.vals[f] = []string{}
	}
	return q
}

// Types keeps activities whose Type is one of types.
func (q *Query) Types(types ...string) *Query { return q.add(fieldType, types) }

// Users keeps activities whose UserID is one of users. The empty string
// selects system events, which have no user.
func (q *Query) Users(users ...string) *Query { return q.add(fieldUser, users) }

// System keeps system events only: those with no user. It is Users("").
func (q *Query) System() *Query { return q.add(fieldUser, []string{""}) }

// Modules keeps activities whose Module is one of modules.
func (q *Query) Modules(modules ...string) *Query { return q.add(fieldModule, modules) }

// Actions keeps activities whose Action is one of actions.
func (q *Query) Actions(actions ...string) *Query { return q.add(fieldAction, actions) }

// Resources keeps activities whose Resource is one of resources.
func (q *Query) Resources(resources ...string) *Query { return q.add(fieldResource, resources) }

// Since keeps activities at or after t.
func (q *Query) Since(t time.Time) *Query { q.since, q.hasSince = t, true; return q }

// Until keeps activities before t.
func (q *Query) Until(t time.Time) *Query { q.until, q.hasUntil = t, true; return q }

// Limit sets the page size of All, from 1 to MaxLimit; the default is
// DefaultLimit. For Iter and Store.Tail it caps the number of activities,
// with no upper bound; 0 means all.
func (q *Query) Limit(n int) *Query { q.limit = n; return q }

// Skip passes over the first n matches (after the cursor, if any). Skipped
// activities are counted from the indexes, never read.
func (q *Query) Skip(n int) *Query { q.skip = n; return q }

// After continues from a cursor returned in Page.Next: only activities older
// than the last one of that page match. Cursors stay valid across appends,
// seals and reopens; pages never repeat or miss an activity.
func (q *Query) After(cursor string) *Query { q.after = cursor; return q }

// Page is one page of results.
type Page struct {
	// Activities are the matches, newest first. The caller owns them.
	Activities []Activity
	// Next is the cursor of the following page, for After; empty when this
	// page holds the last match.
	Next string
}

// plan is a validated query, ready to run.
type plan struct {
	fs     filterSet
	lo, hi ID // IDs in [lo, hi) match
	skip   uint64
	limit  int
}

const cursorVersion = 1

func encodeCursor(id ID) string {
	var b [17]byte
	b[0] = cursorVersion
	copy(b[1:], id[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeCursor(c string) (ID, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	var id ID
	if err != nil || len(b) != 17 || b[0] != cursorVersion {
		return id, &QueryError{Field: "cursor", Reason: clipped(c) + " is not a cursor"}
	}
	copy(id[:], b[1:])
	if !id.valid() {
		return id, &QueryError{Field: "cursor", Reason: clipped(c) + " is not a cursor"}
	}
	return id, nil
}

// plan validates q and resolves its values.
func (q *Query) plan(forAll bool) (plan, error) {
	var p plan
	switch {
	case q.limit < 0:
		return p, &QueryError{Field: "limit", Reason: fmt.Sprintf("%d is negative", q.limit)}
	case forAll && q.limit > MaxLimit:
		return p, &QueryError{Field: "limit", Reason: fmt.Sprintf("%d is over the page limit of %d", q.limit, MaxLimit)}
	case q.skip < 0:
		return p, &QueryError{Field: "skip", Reason: fmt.Sprintf("%d is negative", q.skip)}
	case q.hasSince && q.hasUntil && q.until.Before(q.since):
		return p, &QueryError{Field: "until", Reason: fmt.Sprintf("%s is before since %s", q.until.Format(time.RFC3339Nano), q.since.Format(time.RFC3339Nano))}
	}
	p.limit = q.limit
	if forAll && p.limit == 0 {
		p.limit = DefaultLimit
	}
	p.skip = uint64(q.skip)
	p.hi = maxID
	if q.hasSince && q.since.After(time.Unix(0, 0)) {
		p.lo = idFloor(clampNS(q.since))
	}
	if q.hasUntil {
		p.hi = idFloor(clampNS(q.until))
	}
	if q.after != "" {
		c, err := decodeCursor(q.after)
		if err != nil {
			return p, err
		}
		if c.Compare(p.hi) < 0 {
			p.hi = c
		}
	}
	p.fs.strs = q.vals
	p.fs.resolve(&q.s.dicts)
	return p, nil
}

// clampNS returns t in Unix ns, clamped to the range IDs can hold.
func clampNS(t time.Time) int64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	if t.After(time.Unix(0, 1<<62)) {
		return 1 << 62
	}
	return t.UnixNano()
}

// All returns one page of matches: at most Limit activities, after Skip and
// after the cursor, newest first, and the cursor of the next page. Only the
// returned activities are read from disk.
func (q *Query) All(ctx context.Context) (Page, error) {
	s := q.s
	if s.rd != nil {
		return onReader(ctx, s, func() (Page, error) { return q.allReader(ctx) })
	}
	if err := s.enter(); err != nil {
		return Page{}, err
	}
	defer s.leave()
	p, err := q.plan(true)
	if err != nil {
		return Page{}, err
	}
	var page Page
	err = s.reading(func() error {
		page = Page{}
		hs, err := s.hits(ctx, &p, p.limit+1)
		if err != nil {
			return err
		}
		if len(hs) > p.limit {
			hs = hs[:p.limit]
			page.Next = encodeCursor(hs[len(hs)-1].id)
		}
		page.Activities, err = s.fetch(ctx, hs, true)
		return err
	})
	return page, err
}

// Iter streams every match, newest first, reading iterChunk activities at a
// time; Limit, when set, caps how many. It holds no lock between chunks, so
// appends and queries go on while the caller works; activities appended
// during the walk appear if they are older than the walk's position. Stop
// early by breaking out of the loop. An error ends the sequence.
func (q *Query) Iter(ctx context.Context) iter.Seq2[Activity, error] {
	if q.s.rd != nil {
		return q.iterReader(ctx)
	}
	return func(yield func(Activity, error) bool) {
		s := q.s
		p, err := q.plan(false)
		if err != nil {
			yield(Activity{}, err)
			return
		}
		left := p.limit
		chunk := iterChunk / 16 // at most 1 MiB of records before the first size is known
		read, bytes := 0, 0
		for {
			want := chunk
			if p.limit > 0 {
				want = min(want, left)
			}
			if want == 0 {
				return
			}
			acts, err := func() (acts []Activity, err error) {
				if err := s.enter(); err != nil {
					return nil, err
				}
				defer s.leave()
				err = s.reading(func() error {
					hs, err := s.hits(ctx, &p, want)
					if err == nil {
						acts, err = s.fetch(ctx, hs, false)
					}
					return err
				})
				return acts, err
			}()
			if err != nil {
				yield(Activity{}, err)
				return
			}
			for _, a := range acts {
				if !yield(a, nil) {
					return
				}
			}
			if len(acts) < want {
				return
			}
			for i := range acts {
				bytes += acts[i].Size()
			}
			read += len(acts)
			chunk = max(1, min(iterChunk, iterBytes/max(1, bytes/read)))
			p.skip = 0
			p.hi = acts[len(acts)-1].ID
			left -= len(acts)
		}
	}
}

// Count returns how many activities match the filters and time range. Limit,
// Skip and the cursor do not apply. It reads only indexes, no records.
func (q *Query) Count(ctx context.Context) (int, error) {
	s := q.s
	if s.rd != nil {
		return onReader(ctx, s, func() (int, error) { return q.countReader(ctx) })
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	p, err := q.plan(false)
	if err != nil {
		return 0, err
	}
	if q.after != "" {
		// Count ignores the cursor: restore the time range alone.
		p.hi = maxID
		if q.hasUntil {
			p.hi = idFloor(clampNS(q.until))
		}
	}
	var n uint64
	err = s.reading(func() (err error) {
		n, err = s.countIn(ctx, &p)
		return err
	})
	return int(n), err
}

// countIn counts the matches of p, from indexes only. The caller holds
// s.swapMu for reading.
func (s *Store) countIn(ctx context.Context, p *plan) (uint64, error) {
	var n uint64
	err := s.walk(ctx, p, func(pt part, c ordSet) error {
		k, err := s.count(pt, c, p.lo, p.hi)
		n += k
		return err
	}, func(sl *sealedSeg) bool {
		k, ok := p.fs.countWhole(sl)
		n += k
		return ok
	})
	return n, err
}

// Recent returns the newest activities, newest first: limit of them (0 means
// DefaultLimit) after skipping skip. It is Query().Limit(limit).Skip(skip).
func (s *Store) Recent(ctx context.Context, limit, skip int) ([]Activity, error) {
	page, err := s.Query().Limit(limit).Skip(skip).All(ctx)
	return page.Activities, err
}
