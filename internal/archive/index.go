package archive

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/activitystore/activitystore/internal/codec"
)

// NumFields is the number of label fields the index holds, in the order of
// FieldNames.
const NumFields = 5

// FieldNames are the label fields in index order, as errors name them.
var FieldNames = [NumFields]string{"type", "user_id", "module", "action", "resource"}

// Index is a decoded index section.
type Index struct {
	// Values[f] are the distinct values of field f; a value's position is
	// its value number in Labels and Bitmaps. The strings are copies.
	Values [NumFields][]string
	// Labels[f][o] is the value number of field f of ordinal o.
	Labels [NumFields][]uint32
	// Bitmaps[f][v] holds the ordinals whose field f has value v; none is
	// empty.
	Bitmaps [NumFields][]*roaring.Bitmap
	// CopyAt[v] is, for user value v with copies of its records in the copy
	// blocks, 1 + the position of the first (its newest); 0 when it has
	// none. Its k-th newest record is at that position + k. Format 2 only.
	CopyAt []uint64
}

// noValue marks an ordinal not yet given a value while an index loads.
const noValue = ^uint32(0)

// DecodeIndex parses the index section raw of the archive with footer ft:
// the ID column, then per field the values with their ordinals, then (format
// 2) where each user's copies start. It checks that each ordinal has
// exactly one value per field and that copies lie inside the copy blocks,
// and passes each entry of the ID column, in ordinal order (ascending), to
// id as unix nanoseconds and sequence number; whether the entries are valid
// IDs, in order and inside the window is for id to check. An error from id
// is returned as it is; other errors are *CorruptError.
func DecodeIndex(raw []byte, ft *Footer, id func(o int, ns int64, seq uint64) error) (*Index, error) {
	n := ft.N
	d := codec.Decoder{B: raw}
	if uint64(n) > uint64(len(raw)) {
		return nil, corruptf("index: %d activities in %d bytes", n, len(raw))
	}
	ids, ok := decodeIDs(&d, n)
	if !ok {
		return nil, corruptf("index: malformed ID column")
	}
	for i, x := range ids {
		if err := id(i, x.NS, x.Seq); err != nil {
			return nil, err
		}
	}
	ix := &Index{}
	ords := make([]uint32, 0, n)
	for f := range NumFields {
		k := d.Uvarint()
		if d.Err != nil || k > uint64(len(d.B)) {
			return nil, corruptf("index: field %s: bad value count", FieldNames[f])
		}
		labels := make([]uint32, n)
		for o := range labels {
			labels[o] = noValue
		}
		ix.Labels[f] = labels
		ix.Values[f] = make([]string, k)
		seen := make(map[string]bool, k)
		for i := range k {
			v := d.Bytes()
			if d.Err != nil {
				return nil, corruptf("index: field %s: %v", FieldNames[f], d.Err)
			}
			if seen[string(v)] {
				return nil, corruptf("index: field %s: value %q twice", FieldNames[f], v)
			}
			seen[string(v)] = true
			ix.Values[f][i] = string(v)
		}
		counts := make([]uint64, k)
		var total uint64
		for i := range counts {
			counts[i] = d.Uvarint()
			total += counts[i]
			if d.Err != nil || counts[i] == 0 || total > uint64(n) {
				return nil, corruptf("index: field %s: bad ordinal counts", FieldNames[f])
			}
		}
		if total != uint64(n) {
			return nil, corruptf("index: field %s: %d ordinals for %d activities", FieldNames[f], total, n)
		}
		ix.Bitmaps[f] = make([]*roaring.Bitmap, k)
		for i, c := range counts {
			ords = ords[:0]
			next := uint64(0) // smallest possible next ordinal
			for range c {
				o := next + d.Uvarint()
				if d.Err != nil || o >= uint64(n) || labels[o] != noValue {
					return nil, corruptf("index: field %s: bad ordinal list of %q", FieldNames[f], ix.Values[f][i])
				}
				labels[o] = uint32(i)
				ords = append(ords, uint32(o))
				next = o + 1
			}
			bm := roaring.New()
			bm.AddMany(ords)
			ix.Bitmaps[f][i] = bm
		}
	}
	if ft.Format >= 2 {
		copies := uint64(ft.CopyCount())
		ix.CopyAt = make([]uint64, len(ix.Values[UserField]))
		type span struct{ from, to uint64 }
		var spans []span
		for v := range ix.CopyAt {
			at := d.Uvarint()
			card := ix.Bitmaps[UserField][v].GetCardinality()
			if d.Err != nil || (at > 0 && (at-1 > copies || card > copies-(at-1))) {
				return nil, corruptf("index: copies of user %q outside the copy blocks", ix.Values[UserField][v])
			}
			ix.CopyAt[v] = at
			if at > 0 {
				spans = append(spans, span{at - 1, at - 1 + card})
			}
		}
		// Each copy is of one activity.
		slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
		for i := 1; i < len(spans); i++ {
			if spans[i].from < spans[i-1].to {
				return nil, corruptf("index: copies of two users overlap")
			}
		}
	}
	if len(d.B) != 0 {
		return nil, corruptf("index: %d trailing bytes", len(d.B))
	}
	return ix, nil
}

// appendIndex appends the raw index section of the activities ids (newest
// first), whose field f has value vals[f][v] at the ordinals ords[f][v]
// (descending), and adds to cuts where its columns end.
func appendIndex(dst []byte, ids []idSeq, vals *[NumFields][]string, ords *[NumFields][][]uint32, cuts *[]int) []byte {
	// The ID column ascending: the first entry whole, then differences.
	var pns int64
	var pseq uint64
	for i := len(ids) - 1; i >= 0; i-- {
		ns, seq := ids[i].ns, ids[i].seq
		if i == len(ids)-1 {
			dst = binary.AppendUvarint(dst, uint64(ns))
			dst = binary.AppendUvarint(dst, seq)
		} else {
			dst = binary.AppendUvarint(dst, uint64(ns-pns))
			dst = binary.AppendUvarint(dst, zigzag(int64(seq-pseq)))
		}
		pns, pseq = ns, seq
	}
	// Per field: the values, the number of ordinals of each, then each
	// value's ordinals ascending as gaps: a bitmap per value, in a form
	// that compresses to about the entropy of the labels.
	for f := range NumFields {
		*cuts = append(*cuts, len(dst))
		dst = binary.AppendUvarint(dst, uint64(len(vals[f])))
		for _, val := range vals[f] {
			dst = codec.AppendString(dst, val)
		}
		*cuts = append(*cuts, len(dst))
		for v := range vals[f] {
			dst = binary.AppendUvarint(dst, uint64(len(ords[f][v])))
		}
		*cuts = append(*cuts, len(dst))
		for v := range vals[f] {
			os := ords[f][v] // descending
			next := uint32(0)
			for i := len(os) - 1; i >= 0; i-- {
				dst = binary.AppendUvarint(dst, uint64(os[i]-next))
				next = os[i] + 1
			}
		}
	}
	return dst
}
