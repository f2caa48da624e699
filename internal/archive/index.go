package archive

import (
	"encoding/binary"

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
}

// noValue marks an ordinal not yet given a value while an index loads.
const noValue = ^uint32(0)

// DecodeIndex parses the index section raw of an archive of n activities:
// the ID column, then per field the values with their ordinals. It checks
// that each ordinal has exactly one value per field, and passes each entry
// of the ID column, in ordinal order (ascending), to id as unix nanoseconds
// and sequence number; whether the entries are valid IDs, in order and
// inside the window is for id to check. An error from id is returned as it
// is; other errors are *CorruptError.
func DecodeIndex(raw []byte, n int, id func(o int, ns int64, seq uint64) error) (*Index, error) {
	d := codec.Decoder{B: raw}
	if uint64(n) > uint64(len(raw)) {
		return nil, corruptf("index: %d activities in %d bytes", n, len(raw))
	}
	var ns, seq uint64
	for i := range n {
		if i == 0 {
			ns, seq = d.Uvarint(), d.Uvarint()
		} else {
			ns += d.Uvarint()
			dz := d.Uvarint()
			seq += uint64(int64(dz>>1) ^ -int64(dz&1))
		}
		if d.Err != nil || ns > 1<<63-1 {
			return nil, corruptf("index: ID column entry %d is malformed", i)
		}
		if err := id(i, int64(ns), seq); err != nil {
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
			ds := int64(seq - pseq)
			dst = binary.AppendUvarint(dst, uint64(ds<<1^(ds>>63)))
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
