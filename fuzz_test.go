package activitystore

import (
	"bytes"
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

// FuzzDecodeSegment feeds arbitrary parts to the persisted segment decoder,
// the one place bitmaps are read from disk: it must return an error or a
// segment whose invariants hold, never panic.
func FuzzDecodeSegment(f *testing.F) {
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
	parts, err := seg.encode(&d)
	if err != nil {
		f.Fatal(err)
	}
	// One input holds every part, each behind a 2-byte length.
	join := func(parts [][]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, byte(len(p)>>8), byte(len(p)))
			b = append(b, p...)
		}
		return b
	}
	f.Add(join(parts))
	f.Add(join(parts)[:50])
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var parts [][]byte
		for len(b) >= 2 {
			n := int(b[0])<<8 | int(b[1])
			b = b[2:]
			n = min(n, len(b))
			parts = append(parts, b[:n])
			b = b[n:]
		}
		for i, p := range parts {
			// Let the fuzzer reach past the checksums: fix them up.
			if len(p) >= 4 {
				parts[i] = appendCRC(append([]byte(nil), p[:len(p)-4]...))
			}
		}
		var dicts [numFields]dict
		s, err := decodeSegment(w, width, parts, &dicts)
		if err != nil {
			return
		}
		for o := 1; o < s.len(); o++ {
			if s.ids[o].Compare(s.ids[o-1]) <= 0 {
				t.Fatal("decoded segment out of order")
			}
		}
		for f := range numFields {
			for _, bm := range s.bms[f] {
				if int(bm.Maximum()) >= s.len() {
					t.Fatal("bitmap past the segment")
				}
			}
		}
	})
}
