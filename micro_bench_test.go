package activitystore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Micro-benchmarks of the hot paths. Each op is one call.

// BenchmarkDecodeRecord decodes one pebble record value.
func BenchmarkDecodeRecord(b *testing.B) {
	a := act("model.deploy", "user-00042", testBase)
	a.APICall, a.Resource = "POST /api/serving/deploy", "model/42"
	a.Details = json.RawMessage(`{"ip":"10.1.2.3","status":200,"duration_ms":41,"request_id":"03c5b80963e07b271b45ef8485e3fa68","message":"request completed"}`)
	v := appendRecord(nil, &a)
	id := makeID(testBase.UnixNano(), 1)
	b.ReportAllocs()
	var out Activity
	for b.Loop() {
		if err := decodeRecord(id, v, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSegment returns a sorted segment of n activities over 24 types and
// 2000 users, skewed like the bench data.
func benchSegment(n int) (*segment, *[numFields]dict) {
	var d [numFields]dict
	seg := newSegment(0)
	for i := range n {
		typ := fmt.Sprintf("type-%d", (i*i)%24%(1+i%24))
		user := fmt.Sprintf("user-%d", (i*7919)%2000%(1+i%100))
		labels := [numFields]string{typ, user, "m", "a", ""}
		var vals [numFields]uint32
		for f, l := range labels {
			vals[f] = d[f].intern(l)
		}
		seg.add(makeID(int64(i)*int64(time.Millisecond)+1, uint64(i+1)), &vals)
	}
	return seg, &d
}

// BenchmarkCandidatesAndCollect selects type∧user in a 33k-activity segment
// and collects the newest 50: the bitmap work of one filtered query.
func BenchmarkCandidatesAndCollect(b *testing.B) {
	seg, d := benchSegment(33_000)
	t, _ := d[fieldType].lookup("type-0")
	u, _ := d[fieldUser].lookup("user-0")
	fs := filterSet{any: true}
	fs.vals[fieldType] = []uint32{t}
	fs.vals[fieldUser] = []uint32{u}
	out := make([]ID, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		c, ok := fs.candidates(seg)
		if !ok {
			b.Fatal("no candidates")
		}
		var skip uint64
		out = seg.collect(c, NilID, maxID, &skip, 50, out[:0])
	}
	if len(out) == 0 {
		b.Fatal("nothing collected")
	}
}

// BenchmarkStats calls Stats on a store with 30 open windows of 10,000
// activities each, over 2000 users.
func BenchmarkStats(b *testing.B) {
	s, _, clock := openTest(b, &Options{NoSync: true, SegmentWidth: time.Hour})
	clock.Set(testBase.Add(31 * time.Hour))
	ctx := context.Background()
	batch := make([]Activity, 1000)
	for w := range 30 {
		for k := range 10 {
			for j := range batch {
				i := k*len(batch) + j
				batch[j] = act(mTypes[i%len(mTypes)], fmt.Sprintf("user-%d", i*7919%2000), testBase.Add(time.Duration(w)*time.Hour+time.Duration(i)*time.Millisecond))
			}
			if _, err := s.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Stats(ctx)
		if err != nil || st.OpenSegments != 30 || st.IndexBytes == 0 {
			b.Fatal(err, st.OpenSegments)
		}
	}
}

// BenchmarkAppendSmall appends batches of 100 activities to a store without
// sync: the append path without the disk.
func BenchmarkAppendSmall(b *testing.B) {
	s, _, _ := openTest(b, &Options{NoSync: true})
	batch := make([]Activity, 100)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range batch {
			batch[j] = act(mTypes[j%len(mTypes)], mUsers[j%len(mUsers)], testBase.Add(time.Duration(i)*time.Millisecond))
			i++
		}
		if _, err := s.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTail appends batches of 1000 while a tail of every activity reads
// them; an op is one activity appended and delivered.
func BenchmarkTail(b *testing.B) {
	s, _, _ := openTest(b, &Options{NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seq, err := s.Tail(ctx, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]Activity, 1000)
	for i := range batch {
		batch[i] = act("model.deploy", fmt.Sprintf("user-%d", i%50), testBase.Add(time.Duration(i)*time.Millisecond))
	}
	b.ReportAllocs()
	done := make(chan int)
	go func() {
		n := 0
		for _, err := range seq {
			if err != nil {
				b.Error(err)
				break
			}
			if n++; n == b.N {
				break
			}
		}
		done <- n
	}()
	for left := b.N; left > 0; left -= len(batch) {
		for i := range batch { // in time order, as live appends come
			batch[i].Time = batch[i].Time.Add(time.Second)
		}
		if _, err := s.Append(ctx, batch[:min(left, len(batch))]...); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

// BenchmarkUnmarshalJSON decodes one activity of the bench data's shape,
// with the hand-written decoder and with the encoding/json reference.
func BenchmarkUnmarshalJSON(b *testing.B) {
	a := act("model.deploy", "user-00042", testBase)
	a.ID = makeID(testBase.UnixNano(), 1)
	a.APICall, a.Resource = "POST /api/serving/deploy", "model/42"
	a.Details = json.RawMessage(`{"ip":"10.1.2.3","status":200,"duration_ms":41,"request_id":"03c5b80963e07b271b45ef8485e3fa68","message":"request completed"}`)
	line := a.AppendJSON(nil)
	for _, impl := range []struct {
		name string
		fn   func(*Activity, []byte) error
	}{{"fast", (*Activity).UnmarshalJSON}, {"encoding-json", (*Activity).unmarshalJSONReference}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			var out Activity
			for b.Loop() {
				if err := impl.fn(&out, line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeUserEntry decodes a light user's entry in a sealed
// segment (2 activities, with their copies) and puts it in the cache, as a
// scan of the user's windows does for each.
func BenchmarkDecodeUserEntry(b *testing.B) {
	s, _, _ := openTest(b, &Options{SegmentWidth: time.Hour})
	var acts []Activity
	for i := range 300 {
		a := act("model.deploy", fmt.Sprintf("user-%d", i%150), testBase.Add(time.Duration(i)*time.Second))
		a.APICall, a.Resource = "POST /api/serving/deploy", "model/42"
		a.Details = json.RawMessage(`{"ip":"10.1.2.3","status":200,"duration_ms":41,"request_id":"03c5b80963e07b271b45ef8485e3fa68"}`)
		acts = append(acts, a)
	}
	mustAppend(b, s, acts...)
	if err := s.sealDue(context.Background()); err != nil {
		b.Fatal(err)
	}
	w := testBase.UnixNano() / int64(time.Hour)
	sl := s.sealed[w]
	raw, c, err := s.db.Get(userKey(nil, "user-7", w, sl.gen))
	if err != nil {
		b.Fatal(err)
	}
	raw = append([]byte(nil), raw...)
	c.Close()
	b.ReportAllocs()
	for b.Loop() {
		sv, ok, err := decodeUserEntry(raw, sl, "user-7")
		if err != nil || !ok || len(sv.recs) != 2 {
			b.Fatal(ok, err)
		}
		s.cacheValue(sl, copyField, "user-7", &sv)
	}
}
