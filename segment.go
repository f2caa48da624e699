package activitystore

import (
	"slices"
	"sort"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
)

// A segment indexes the activities of one event-time window. Each activity
// gets a dense ordinal, its position in ids; the bitmaps of each field value
// hold ordinals. Ordinals follow arrival. Once a window is sealed, its
// ordinals are renumbered in ID order and its index is written to pebble.
//
// Arrivals out of ID order (late events, history imports, concurrent
// writers) are "late" ordinals: they sit in late, and lateByID lists them in
// ID order. Every other ordinal is in ID order, so for those the prefix
// maxima pmax equal the IDs themselves and a binary search over pmax finds
// the ordinal range of an ID range. Queries merge the in-order ordinals with
// the late ones. When the late list grows past lateLimit the segment is
// renumbered in memory.
type segment struct {
	mu     sync.RWMutex
	window int64 // window number: event time in ns / window width

	ids      []ID            // by ordinal
	pmax     []ID            // prefix maxima of ids; nil while nothing is late
	late     *roaring.Bitmap // late ordinals; nil while nothing is late
	lateByID []uint32        // late ordinals ascending by ID

	bms [numFields]map[uint32]*roaring.Bitmap // value number -> ordinals

	// sealed is set while the persisted index in pebble is this one.
	sealed bool
	// logged counts the activities added since the segment was last
	// written to pebble, which the append log holds.
	logged int

	// ib is the last measure of the bitmaps' serialized size (indexBytes),
	// taken when the segment held ib.at activities.
	ib struct {
		mu  sync.Mutex
		at  int
		per [numFields]uint64
	}
}

func newSegment(window int64) *segment {
	s := &segment{window: window}
	for f := range s.bms {
		s.bms[f] = make(map[uint32]*roaring.Bitmap)
	}
	return s
}

func (s *segment) len() int { return len(s.ids) }

func (s *segment) pmaxAt(o int) ID {
	if s.pmax != nil {
		return s.pmax[o]
	}
	return s.ids[o]
}

// add indexes one activity. The caller holds s.mu.
func (s *segment) add(id ID, vals *[numFields]uint32) {
	o := uint32(len(s.ids))
	if o > 0 && id.Compare(s.pmaxAt(int(o-1))) < 0 {
		if s.pmax == nil {
			s.pmax = make([]ID, len(s.ids), cap(s.ids))
			copy(s.pmax, s.ids)
			s.late = roaring.New()
		}
		s.pmax = append(s.pmax, s.pmax[o-1])
		s.late.Add(o)
		i := sort.Search(len(s.lateByID), func(i int) bool { return s.ids[s.lateByID[i]].Compare(id) > 0 })
		s.ids = append(s.ids, id)
		s.lateByID = slices.Insert(s.lateByID, i, o)
	} else {
		if s.pmax != nil {
			s.pmax = append(s.pmax, id)
		}
		s.ids = append(s.ids, id)
	}
	for f := range numFields {
		bm := s.bms[f][vals[f]]
		if bm == nil {
			bm = roaring.New()
			s.bms[f][vals[f]] = bm
		}
		bm.Add(o)
	}
	s.sealed = false
	s.logged++
}

// bound returns the first in-order ordinal whose ID is >= x: in-order
// ordinals below it have smaller IDs, those at or above it larger or equal.
func (s *segment) bound(x ID) uint32 {
	return uint32(sort.Search(len(s.ids), func(o int) bool { return s.pmaxAt(o).Compare(x) >= 0 }))
}

// lateRange returns the span of lateByID whose IDs lie in [lo, hi).
func (s *segment) lateRange(lo, hi ID) (int, int) {
	if len(s.lateByID) == 0 {
		return 0, 0
	}
	i := sort.Search(len(s.lateByID), func(i int) bool { return s.ids[s.lateByID[i]].Compare(lo) >= 0 })
	j := sort.Search(len(s.lateByID), func(i int) bool { return s.ids[s.lateByID[i]].Compare(hi) >= 0 })
	return i, j
}

// find returns the ordinal of id, or -1.
func (s *segment) find(id ID) int {
	o := s.bound(id)
	if int(o) < len(s.ids) && s.ids[o] == id {
		return int(o)
	}
	i := sort.Search(len(s.lateByID), func(i int) bool { return s.ids[s.lateByID[i]].Compare(id) >= 0 })
	if i < len(s.lateByID) && s.ids[s.lateByID[i]] == id {
		return int(s.lateByID[i])
	}
	return -1
}

// lateMatches returns the late ordinals among c: nil when the segment has no
// late ordinal.
func (s *segment) lateMatches(c ordSet) *roaring.Bitmap {
	if s.late == nil {
		return nil
	}
	if c.bm == nil {
		return s.late
	}
	return roaring.And(c.bm, s.late)
}

// count returns how many members of c have IDs in [lo, hi). The caller holds
// s.mu.
func (s *segment) count(c ordSet, lo, hi ID) uint64 {
	oLo, oHi := s.bound(lo), s.bound(hi)
	lc := s.lateMatches(c)
	n := c.countRange(oLo, oHi) - countRangeBM(lc, oLo, oHi)
	if lc != nil && !lc.IsEmpty() {
		i, j := s.lateRange(lo, hi)
		switch {
		case i == 0 && j == len(s.lateByID): // every late ID is in range
			n += lc.GetCardinality()
		case lc.GetCardinality() < uint64(j-i):
			for it := lc.Iterator(); it.HasNext(); {
				if id := s.ids[it.Next()]; id.Compare(lo) >= 0 && id.Compare(hi) < 0 {
					n++
				}
			}
		default:
			for _, o := range s.lateByID[i:j] {
				if lc.Contains(o) {
					n++
				}
			}
		}
	}
	return n
}

// collect walks the members of c with IDs in [lo, hi) newest first: it passes
// over the first *skip of them (decrementing *skip) and appends up to want
// more IDs to dst. The caller holds s.mu.
func (s *segment) collect(c ordSet, lo, hi ID, skip *uint64, want int, dst []ID) []ID {
	oLo, oHi := s.bound(lo), s.bound(hi)
	if oHi <= oLo && s.late == nil {
		return dst
	}
	lc := s.lateMatches(c)
	if lc != nil && lc.IsEmpty() {
		lc = nil
	}
	// countA counts in-order members in the ordinal range [p, oHi).
	countA := func(p uint32) uint64 {
		p = max(p, oLo)
		return c.countRange(p, oHi) - countRangeBM(lc, p, oHi)
	}
	li, lj := 0, 0
	if lc != nil {
		li, lj = s.lateRange(lo, hi)
	}
	aTop := int64(oHi) - 1 // in-order walk starts at or below this ordinal
	bTop := lj - 1         // late walk starts at or below this index of lateByID
	if *skip > 0 {
		var late []int // indexes into lateByID of late members, newest first
		if lc != nil {
			for k := lj - 1; k >= li; k-- {
				if lc.Contains(s.lateByID[k]) {
					late = append(late, k)
				}
			}
		}
		nA := countA(oLo)
		total := nA + uint64(len(late))
		if *skip >= total {
			*skip -= total
			return dst
		}
		k := *skip
		*skip = 0
		// pos(j) is the position of late[j] in the merged order.
		pos := func(j int) uint64 { return uint64(j) + countA(s.bound(s.ids[s.lateByID[late[j]]])) }
		j := sort.Search(len(late), func(j int) bool { return pos(j) >= k })
		if j < len(late) && pos(j) == k {
			bTop = late[j]
			aTop = int64(s.bound(s.ids[s.lateByID[late[j]]])) - 1
		} else {
			if j < len(late) {
				bTop = late[j]
			} else {
				bTop = li - 1
			}
			// The item at position k is the (k-j)-th in-order member, newest
			// first: the largest ordinal p with countA(p) >= k-j+1.
			d := k - uint64(j) + 1
			switch {
			case lc == nil && c.bm == nil:
				aTop = int64(oHi) - int64(d)
			case lc == nil:
				// Every member is in order: select by rank.
				o, err := c.bm.Select(uint32(c.bm.Rank(oHi-1) - d))
				if err != nil || oHi == 0 {
					return dst
				}
				aTop = int64(o)
			default:
				p := sort.Search(int(oHi-oLo)+1, func(i int) bool { return countA(oLo+uint32(i)) < d })
				aTop = int64(oLo) + int64(p) - 1
			}
		}
	}
	prevA := func(x int64) int64 {
		for x >= int64(oLo) {
			o := c.prev(uint32(x))
			if o < int64(oLo) {
				return -1
			}
			if lc != nil && lc.Contains(uint32(o)) {
				x = o - 1
				continue
			}
			return o
		}
		return -1
	}
	prevB := func(k int) int {
		for ; k >= li; k-- {
			if lc.Contains(s.lateByID[k]) {
				return k
			}
		}
		return -1
	}
	a := prevA(aTop)
	b := -1
	if lc != nil {
		b = prevB(bTop)
	}
	for want > 0 && (a >= 0 || b >= 0) {
		if b < 0 || (a >= 0 && s.ids[a].Compare(s.ids[s.lateByID[b]]) > 0) {
			dst = append(dst, s.ids[a])
			a = prevA(a - 1)
		} else {
			dst = append(dst, s.ids[s.lateByID[b]])
			b = prevB(b - 1)
		}
		want--
	}
	return dst
}

// sorted returns the segment renumbered in ID order: s itself when nothing
// is late. The caller holds s.mu; s is not changed.
func (s *segment) sorted() *segment {
	if s.late == nil {
		return s
	}
	n := len(s.ids)
	newOrd := make([]uint32, n)
	out := newSegment(s.window)
	out.ids = make([]ID, 0, max(n, cap(s.ids))) // keeps the room s made ahead
	lb := s.lateByID
	for o := 0; o < n || len(lb) > 0; {
		if o < n && s.late.Contains(uint32(o)) {
			o++
			continue
		}
		if len(lb) > 0 && (o >= n || s.ids[lb[0]].Compare(s.ids[o]) < 0) {
			newOrd[lb[0]] = uint32(len(out.ids))
			out.ids = append(out.ids, s.ids[lb[0]])
			lb = lb[1:]
			continue
		}
		newOrd[o] = uint32(len(out.ids))
		out.ids = append(out.ids, s.ids[o])
		o++
	}
	var buf []uint32
	for f := range numFields {
		for v, bm := range s.bms[f] {
			buf = buf[:0]
			it := bm.ManyIterator()
			var chunk [256]uint32
			for k := it.NextMany(chunk[:]); k > 0; k = it.NextMany(chunk[:]) {
				for _, o := range chunk[:k] {
					buf = append(buf, newOrd[o])
				}
			}
			slices.Sort(buf)
			nb := roaring.New()
			nb.AddMany(buf)
			out.bms[f][v] = nb
		}
	}
	return out
}

// indexBytes returns the serialized size of the segment's bitmaps per field,
// measured again only once the segment grew by an eighth since the last
// time: measuring walks every bitmap, and Stats must stay cheap while it
// holds the segment from appends. The caller holds s.mu.
func (s *segment) indexBytes() [numFields]uint64 {
	s.ib.mu.Lock()
	defer s.ib.mu.Unlock()
	if n := len(s.ids); s.ib.at == 0 || n > s.ib.at+s.ib.at/8 {
		var per [numFields]uint64
		for f := range numFields {
			for _, bm := range s.bms[f] {
				per[f] += bm.GetSerializedSizeInBytes()
			}
		}
		s.ib.at, s.ib.per = n, per
	}
	return s.ib.per
}
