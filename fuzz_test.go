package activitystore

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must
// return an error or an activity, never panic.
func FuzzDecodeRecord(f *testing.F) {
	a := act("user.login", "u1", testBase)
	a.APICall, a.Resource = "POST /x", "model/1"
	f.Add(appendRecord(nil, &a))
	f.Add([]byte{recordVersion})
	f.Add([]byte{recordVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Activity
		if err := decodeRecord(makeID(testBase.UnixNano(), 1), b, &got); err != nil {
			return
		}
		// What decodes encodes to bytes that decode to the same activity.
		var again Activity
		if err := decodeRecord(got.ID, appendRecord(nil, &got), &again); err != nil {
			t.Fatal(err)
		}
		if again.Type != got.Type || again.UserID != got.UserID || again.Resource != got.Resource ||
			string(again.Details) != string(bytes.TrimSpace(got.Details)) {
			t.Fatalf("round trip differs for %x", b)
		}
	})
}

// FuzzDecodeSealed feeds arbitrary bytes to the decoders of a sealed
// segment's descriptor, bitmaps and user entries, the places a sealed index is read from
// disk: they must return an error or a value whose invariants hold, never
// panic.
func FuzzDecodeSealed(f *testing.F) {
	width := int64(time.Hour)
	w := testBase.UnixNano() / width
	seg := newSegment(w)
	var d [numFields]dict
	for i := range 40 {
		var vals [numFields]uint32
		for fi, l := range (&Activity{Type: []string{"a", "b"}[i%2], UserID: []string{"", "u1", "u2"}[i%3], Module: "m", Action: "x"}).labels() {
			vals[fi] = d[fi].intern(l)
		}
		seg.add(makeID(testBase.UnixNano()+int64(i)*int64(time.Second), uint64(i+1)), &vals)
	}
	var values [][]byte
	recs := map[ID][]byte{}
	for i, id := range seg.ids {
		recs[id] = fmt.Appendf(nil, "record %d", i)
	}
	sl, err := seg.persist(7, inlineIDs, inlineIDs, recs, &d, func(k, v []byte) error {
		values = append(values, append([]byte(nil), v...))
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sl.encode())
	for _, v := range values {
		f.Add(v)
	}
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			// Let the fuzzer reach past the checksum: fix it up.
			b = appendCRC(append([]byte(nil), b[:len(b)-4]...))
		}
		if got, err := decodeDescriptor(w, width, b); err == nil {
			if got.n <= 0 || len(got.firsts) != (got.n+got.chunk-1)/got.chunk {
				t.Fatalf("descriptor of %d activities with %d chunks", got.n, len(got.firsts))
			}
			for i := 1; i < len(got.firsts); i++ {
				if got.firsts[i].Compare(got.firsts[i-1]) <= 0 {
					t.Fatal("chunks out of order")
				}
			}
		}
		for _, f := range []field{fieldType, fieldUser} {
			if sv, err := decodeSealedValue(b, sl, f, "a", true); err == nil {
				if sv.bm.IsEmpty() || sv.bm.Maximum() >= 40 {
					t.Fatal("bitmap past the segment")
				}
				if sv.ids != nil && uint64(len(sv.ids)) != sv.bm.GetCardinality() {
					t.Fatalf("%d inline IDs for %d ordinals", len(sv.ids), sv.bm.GetCardinality())
				}
				if sv.recs != nil && (f != copyField || len(sv.recs) != len(sv.ids)) {
					t.Fatalf("%d record copies for %d IDs in field %s", len(sv.recs), len(sv.ids), f)
				}
			}
		}
		if sv, ok, err := decodeUserEntry(b, sl, "a"); err == nil && ok {
			if sv.bm.IsEmpty() || sv.bm.Maximum() >= 40 || uint64(len(sv.ids)) != sv.bm.GetCardinality() || len(sv.recs) != len(sv.ids) {
				t.Fatalf("user entry of %d ordinals, %d IDs and %d copies", sv.bm.GetCardinality(), len(sv.ids), len(sv.recs))
			}
		}
	})
}
