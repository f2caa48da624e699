package activitystore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

// MaxBuckets is the most buckets one Timeline call returns.
const MaxBuckets = 100_000

// Bucket is one interval of a Timeline: Count activities matched in
// [Start, Start+bucket).
type Bucket struct {
	Start time.Time `json:"start"`
	Count int       `json:"count"`
}

// ValueCount is one value of a field and how many matches have it.
type ValueCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Fields lists the names CountBy takes, in the order of the JSON form.
var Fields = []string{"type", "user_id", "module", "action", "resource"}

// parseField returns the field named name; "user" is an alias of "user_id".
func parseField(name string) (field, bool) {
	if name == "user" {
		return fieldUser, true
	}
	for f := range numFields {
		if fieldNames[f] == name {
			return f, true
		}
	}
	return 0, false
}

// aggregate runs fn on every part that may hold matches of q, with the
// part's candidates and q's ID range. It ignores Limit, Skip and the cursor,
// like Count.
func (q *Query) aggregate(ctx context.Context, fn func(pt part, c ordSet, lo, hi ID) error) error {
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	p, err := q.plan(false)
	if err != nil {
		return err
	}
	if q.after != "" {
		p.hi = maxID
		if q.hasUntil {
			p.hi = idFloor(clampNS(q.until))
		}
	}
	return s.reading(func() error {
		return s.walk(ctx, &p, func(pt part, c ordSet) error { return fn(pt, c, p.lo, p.hi) }, nil)
	})
}

// Timeline counts the matches of q per bucket of time: one Bucket for each
// interval of length bucket, oldest first, zeros included. Buckets start at
// multiples of bucket since the Unix epoch, so hours and days start on UTC
// hours and days. The first and last buckets are cut to Since and Until;
// without Since the timeline starts at the bucket of the oldest match, without
// Until it ends with the bucket of the newest, and without one of them and no
// match it is empty. Only the query's matches set that range, and its limit
// of MaxBuckets applies to the windows (Options.SegmentWidth) that hold them.
// It reads only indexes; Limit, Skip and the cursor do not apply.
// A bucket under a nanosecond, or a range of more than MaxBuckets buckets, is
// a *QueryError for "bucket".
func (q *Query) Timeline(ctx context.Context, bucket time.Duration) ([]Bucket, error) {
	if bucket <= 0 {
		return nil, &QueryError{Field: "bucket", Reason: fmt.Sprintf("%s is not positive", bucket)}
	}
	s := q.s
	if s.rd != nil {
		return onReader(ctx, s, func() ([]Bucket, error) { return q.timelineReader(ctx, bucket) })
	}
	// The range of buckets: from Since, or the oldest window with a match,
	// to Until, or the end of the newest window with a match. Only the
	// query's own matches set it, so what other users stored never shapes
	// it.
	lo, hi := int64(0), int64(0)
	if !q.hasSince || !q.hasUntil {
		oldest, newest, found := int64(0), int64(0), false
		err := q.aggregate(ctx, func(pt part, c ordSet, qlo, qhi ID) error {
			n, err := s.count(pt, c, qlo, qhi)
			if err != nil || n == 0 {
				return err
			}
			w := pt.window()
			if !found || w < oldest {
				oldest = w
			}
			if !found || w > newest {
				newest = w
			}
			found = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		if found {
			lo = oldest * s.width
			hi = maxIDMillis * 1e6
			if end := (newest + 1) * s.width; end > 0 && end/s.width == newest+1 {
				hi = min(end, hi)
			}
		}
	}
	if q.hasSince {
		lo = clampNS(q.since)
	}
	if q.hasUntil {
		hi = clampNS(q.until)
	}
	if hi <= lo {
		if q.hasSince && q.hasUntil && q.until.Before(q.since) {
			// Let plan name the inverted range.
			_, err := q.plan(false)
			return nil, err
		}
		return []Bucket{}, nil
	}
	first := lo - lo%int64(bucket)
	nb := (hi-first-1)/int64(bucket) + 1
	if nb > MaxBuckets {
		return nil, &QueryError{Field: "bucket", Reason: fmt.Sprintf("%s makes %d buckets between %s and %s, over the limit of %d", bucket, nb, time.Unix(0, lo).UTC().Format(time.RFC3339), time.Unix(0, hi).UTC().Format(time.RFC3339), MaxBuckets)}
	}
	var counts []uint64
	err := q.aggregate(ctx, func(pt part, c ordSet, qlo, qhi ID) error {
		if counts == nil {
			counts = make([]uint64, nb)
		}
		wlo, whi := s.windowIDs(pt.window())
		if qlo.Compare(wlo) > 0 {
			wlo = qlo
		}
		if qhi.Compare(whi) < 0 {
			whi = qhi
		}
		b := max((wlo.UnixNano()-first)/int64(bucket), 0)
		for ; b < nb; b++ {
			blo := idFloor(first + b*int64(bucket))
			if blo.Compare(whi) >= 0 {
				break
			}
			bhi := whi // the last bucket ends with the range; computing its end could overflow
			if b < nb-1 {
				if end := idFloor(first + (b+1)*int64(bucket)); end.Compare(whi) < 0 {
					bhi = end
				}
			}
			if blo.Compare(wlo) < 0 {
				blo = wlo
			}
			n, err := s.count(pt, c, blo, bhi)
			if err != nil {
				return err
			}
			counts[b] += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if counts == nil {
		counts = make([]uint64, nb)
	}
	i, j := 0, len(counts)
	if !q.hasSince {
		for i < j && counts[i] == 0 {
			i++
		}
	}
	if !q.hasUntil {
		for j > i && counts[j-1] == 0 {
			j--
		}
	}
	out := make([]Bucket, 0, j-i)
	for b := i; b < j; b++ {
		out = append(out, Bucket{Start: time.Unix(0, first+int64(b)*int64(bucket)).UTC(), Count: int(counts[b])})
	}
	return out, nil
}

// CountBy counts the matches of q per value of one field: "type", "user_id"
// (or "user"), "module", "action" or "resource". The result holds every value
// with at least one match, most frequent first, ties by value; system events
// count under the user "". It reads only indexes; Limit, Skip and the cursor
// do not apply. Another field name is a *QueryError for "field".
func (q *Query) CountBy(ctx context.Context, fieldName string) ([]ValueCount, error) {
	f, ok := parseField(fieldName)
	if !ok {
		return nil, &QueryError{Field: "field", Reason: fmt.Sprintf("%s is not one of %v", clipped(fieldName), Fields)}
	}
	s := q.s
	if s.rd != nil {
		return onReader(ctx, s, func() ([]ValueCount, error) { return q.countByReader(ctx, fieldName) })
	}
	counts := map[string]uint64{}
	err := q.aggregate(ctx, func(pt part, c ordSet, lo, hi ID) error {
		return s.countValues(ctx, pt, f, c, lo, hi, counts)
	})
	if err != nil {
		return nil, err
	}
	out := make([]ValueCount, 0, len(counts))
	for v, n := range counts {
		out = append(out, ValueCount{Value: v, Count: int(n)})
	}
	slices.SortFunc(out, func(a, b ValueCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
	return out, nil
}

// fewMatches is the most matches in a part for CountBy to count their
// values from their records rather than from every value's bitmap.
const fewMatches = 64

// countValues adds to counts, per value of field f, how many members of c
// with IDs in [lo, hi) have it.
func (s *Store) countValues(ctx context.Context, pt part, f field, c ordSet, lo, hi ID, counts map[string]uint64) error {
	if c.bm != nil && pt.arc == nil {
		// Few matches among what may be many values (one user's resources):
		// read the matches' labels from their records (or copies) rather
		// than every value's bitmap.
		n, err := s.count(pt, c, lo, hi)
		if err != nil {
			return err
		}
		if n <= fewMatches {
			var zero uint64
			hs, err := s.collect(pt, c, lo, hi, &zero, int(n), nil)
			if err != nil || len(hs) == 0 {
				return err
			}
			acts, err := s.fetch(ctx, hs, false)
			if err != nil {
				return err
			}
			for i := range acts {
				counts[acts[i].labels()[f]]++
			}
			return nil
		}
	}
	wlo, whi := s.windowIDs(pt.window())
	whole := lo.Compare(wlo) <= 0 && hi.Compare(whi) >= 0
	if pt.sl == nil {
		seg := pt.mem
		seg.mu.RLock()
		defer seg.mu.RUnlock()
		for v, bm := range seg.bms[f] {
			var n uint64
			switch {
			case whole && c.bm == nil:
				n = bm.GetCardinality()
			case whole:
				n = c.bm.AndCardinality(bm)
			case c.bm == nil:
				n = seg.count(ordSet{bm: bm, n: c.n}, lo, hi)
			default:
				n = seg.count(ordSet{bm: roaring.And(c.bm, bm), n: c.n}, lo, hi)
			}
			if n > 0 {
				counts[s.dicts[f].value(v)] += n
			}
		}
		return nil
	}
	vals, err := s.sealedField(pt.sl, f)
	if err != nil {
		return err
	}
	var oLo, oHi uint32
	if !whole {
		if oLo, err = s.sealedBound(pt.sl, lo); err != nil {
			return err
		}
		if oHi, err = s.sealedBound(pt.sl, hi); err != nil {
			return err
		}
	}
	for _, vb := range vals {
		var n uint64
		switch {
		case whole && c.bm == nil:
			n = vb.bm.GetCardinality()
		case whole:
			n = c.bm.AndCardinality(vb.bm)
		case c.bm == nil:
			n = countRangeBM(vb.bm, oLo, oHi)
		default:
			n = countRangeBM(roaring.And(c.bm, vb.bm), oLo, oHi)
		}
		if n > 0 {
			counts[vb.v] += n
		}
	}
	return nil
}
