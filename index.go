package activitystore

import (
	"slices"
	"strings"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
)

// field names an indexed field of Activity.
type field uint8

const (
	fieldType field = iota
	fieldUser
	fieldModule
	fieldAction
	fieldResource
	numFields
)

var fieldNames = [numFields]string{"type", "user_id", "module", "action", "resource"}

func (f field) String() string { return fieldNames[f] }

// dict numbers the values of one field, store-wide, so that segments key their
// bitmaps by a small integer instead of a string.
type dict struct {
	mu   sync.RWMutex
	ids  map[string]uint32
	vals []string
}

// lookup returns the number of v, if v was ever seen.
func (d *dict) lookup(v string) (uint32, bool) {
	d.mu.RLock()
	n, ok := d.ids[v]
	d.mu.RUnlock()
	return n, ok
}

// intern returns the number of v, giving it one if it has none. The dict
// keeps a copy of v, never v's memory.
func (d *dict) intern(v string) uint32 {
	if n, ok := d.lookup(v); ok {
		return n
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n, ok := d.ids[v]; ok {
		return n
	}
	if d.ids == nil {
		d.ids = make(map[string]uint32)
	}
	v = strings.Clone(v)
	n := uint32(len(d.vals))
	d.ids[v] = n
	d.vals = append(d.vals, v)
	return n
}

// value returns the string of value number n.
func (d *dict) value(n uint32) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.vals[n]
}

// ordSet is a set of ordinals of one segment: a bitmap, or, when bm is nil,
// every ordinal in [0, n). For a sealed segment, inl may give the IDs of
// the members: the bitmaps of one filtered field's values, with their
// inline IDs, whose union holds every member.
type ordSet struct {
	bm  *roaring.Bitmap
	n   uint32
	inl []sealedValue
}

// inlineID returns the ID of member o from c.inl, with the copy of its
// record if there is one; false when c has none.
func (c ordSet) inlineID(o uint32) (ID, []byte, bool) {
	for _, v := range c.inl {
		if v.bm.Contains(o) {
			i := v.bm.Rank(o) - 1
			var rec []byte
			if v.recs != nil {
				rec = v.recs[i]
			}
			return v.ids[i], rec, true
		}
	}
	return ID{}, nil, false
}

// countRange returns how many members lie in [lo, hi).
func (c ordSet) countRange(lo, hi uint32) uint64 {
	if hi <= lo {
		return 0
	}
	if c.bm == nil {
		return uint64(min(hi, c.n) - min(lo, c.n))
	}
	return c.bm.CardinalityInRange(uint64(lo), uint64(hi))
}

// prev returns the largest member <= x, or -1.
func (c ordSet) prev(x uint32) int64 {
	if c.bm == nil {
		if c.n == 0 {
			return -1
		}
		return int64(min(x, c.n-1))
	}
	return c.bm.PreviousValue(x)
}

// contains reports whether x is a member.
func (c ordSet) contains(x uint32) bool {
	if c.bm == nil {
		return x < c.n
	}
	return c.bm.Contains(x)
}

// countRangeBM is countRange for a bitmap that may be nil (empty).
func countRangeBM(bm *roaring.Bitmap, lo, hi uint32) uint64 {
	if bm == nil || hi <= lo {
		return 0
	}
	return bm.CardinalityInRange(uint64(lo), uint64(hi))
}

// filterSet is the resolved form of a query's label filters: per field, the
// value numbers to OR; fields with no filter are nil. none is set when some
// filtered field has no known value, so nothing can match.
type filterSet struct {
	vals [numFields][]uint32
	none bool
	any  bool // at least one field is filtered
	// strs are the filter values as given. missing is set while some of
	// them has no number yet: an archived segment loaded later may bring
	// it, so resolve runs again after each load.
	strs    [numFields][]string
	missing bool
}

// countWhole returns how many activities of the sealed segment sl pass the
// filters, from the counts of its descriptor, and false when they cannot
// tell: filters on more than one field, or on a field without counts.
func (fs *filterSet) countWhole(sl *sealedSeg) (uint64, bool) {
	only, filtered := field(0), false
	for f := range numFields {
		if fs.strs[f] != nil {
			if filtered {
				return 0, false
			}
			only, filtered = f, true
		}
	}
	if !filtered {
		return uint64(sl.n), true
	}
	counts := sl.counts[only]
	if counts == nil {
		return 0, false
	}
	var n uint64
	for i, v := range fs.strs[only] {
		if !slices.Contains(fs.strs[only][:i], v) {
			n += uint64(counts[v])
		}
	}
	return n, true
}

// resolve numbers the filter values from dicts.
func (fs *filterSet) resolve(dicts *[numFields]dict) {
	fs.none, fs.missing = false, false
	for f := range numFields {
		vs := fs.strs[f]
		if vs == nil {
			continue
		}
		fs.any = true
		fs.vals[f] = fs.vals[f][:0]
		if fs.vals[f] == nil {
			fs.vals[f] = []uint32{}
		}
		for _, v := range vs {
			if n, ok := dicts[f].lookup(v); ok {
				fs.vals[f] = append(fs.vals[f], n)
			} else {
				fs.missing = true
			}
		}
		if len(fs.vals[f]) == 0 {
			fs.none = true
		}
	}
}

// candidates returns the ordinals of seg, an in-memory segment, that pass
// the filters, and false when none can. The result may be one of seg's own
// bitmaps: read it only under seg.mu and never change it. The caller holds
// seg.mu.
func (fs *filterSet) candidates(seg *segment) (ordSet, bool) {
	c, ok, _ := fs.pick(uint32(len(seg.ids)),
		func(f field) int { return len(fs.vals[f]) },
		func(f field, i int) (sealedValue, error) { return sealedValue{bm: seg.bms[f][fs.vals[f][i]]}, nil })
	return c, ok
}

// sealedCandidates is candidates for a sealed segment: it reads the bitmaps
// of the filter values, by value, through the cache.
func (fs *filterSet) sealedCandidates(s *Store, sl *sealedSeg) (ordSet, bool, error) {
	return fs.pick(uint32(sl.n),
		func(f field) int { return len(fs.strs[f]) },
		func(f field, i int) (sealedValue, error) {
			sv, err := s.sealedBitmap(sl, f, fs.strs[f][i])
			if sv == nil {
				return sealedValue{}, err
			}
			return *sv, err
		})
}

// pick returns the ordinals below n that pass the filters: per filtered
// field the union of the bitmaps of its values (values(f) of them, the i-th
// from value, with a nil bitmap when absent), intersected across fields.
// When every value present of a filtered field comes with its IDs, the
// result carries them, preferring a field whose values also carry copies
// of their records.
func (fs *filterSet) pick(n uint32, values func(f field) int, value func(f field, i int) (sealedValue, error)) (ordSet, bool, error) {
	if !fs.any {
		return ordSet{n: n}, n > 0, nil
	}
	var per [numFields]*roaring.Bitmap
	var inl []sealedValue
	for f := range numFields {
		if fs.strs[f] == nil {
			continue
		}
		var buf [8]*roaring.Bitmap
		list := buf[:0]
		var vals []sealedValue
		all, recs := true, true
		for i := range values(f) {
			sv, err := value(f, i)
			if err != nil {
				return ordSet{}, false, err
			}
			if sv.bm != nil {
				list = append(list, sv.bm)
				all = all && sv.ids != nil
				recs = recs && sv.recs != nil
				if all {
					vals = append(vals, sv)
				}
			}
		}
		bm, ok := combine(list)
		if !ok {
			return ordSet{}, false, nil
		}
		per[f] = bm
		if all && (inl == nil || (recs && inl[0].recs == nil)) {
			inl = vals
		}
	}
	c, ok := intersect(&per, n)
	c.inl = inl
	return c, ok, nil
}

// combine ORs the bitmaps of one field's values; false when there are none.
func combine(list []*roaring.Bitmap) (*roaring.Bitmap, bool) {
	switch len(list) {
	case 0:
		return nil, false
	case 1:
		return list[0], true
	}
	return roaring.FastOr(list...), true
}

// intersect ANDs the bitmaps of the filtered fields (nil: not filtered).
func intersect(per *[numFields]*roaring.Bitmap, n uint32) (ordSet, bool) {
	var ands [numFields]*roaring.Bitmap
	k := 0
	for _, bm := range per {
		if bm != nil {
			ands[k] = bm
			k++
		}
	}
	var bm *roaring.Bitmap
	switch k {
	case 0:
		return ordSet{n: n}, n > 0
	case 1:
		bm = ands[0]
	case 2:
		bm = roaring.And(ands[0], ands[1])
	default:
		bm = roaring.FastAnd(ands[:k]...)
	}
	if bm.IsEmpty() {
		return ordSet{}, false
	}
	return ordSet{bm: bm, n: n}, true
}
