package activitystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIDLayout(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 30, 0, 123456789, time.UTC)
	id := makeID(at.UnixNano(), 42)
	assert.True(t, id.valid())
	assert.Equal(t, at, id.Time())
	assert.Equal(t, uint64(42), id.seq())
	assert.Equal(t, byte(7), id[6]>>4, "version nibble")
	assert.Equal(t, byte(0b10), id[8]>>6, "variant bits")
	// The leading 48 bits are the Unix milliseconds, as in UUIDv7.
	ms := uint64(id[0])<<40 | uint64(id[1])<<32 | uint64(id[2])<<24 | uint64(id[3])<<16 | uint64(id[4])<<8 | uint64(id[5])
	assert.Equal(t, uint64(at.UnixMilli()), ms)

	txt := id.String()
	assert.Len(t, txt, 36)
	back, err := ParseID(txt)
	require.NoError(t, err)
	assert.Equal(t, id, back)
	back, err = ParseID(strings.ToUpper(txt))
	require.NoError(t, err)
	assert.Equal(t, id, back)

	// Order follows time, then sequence.
	assert.Equal(t, -1, makeID(at.UnixNano(), 1).Compare(makeID(at.UnixNano()+1, 0)))
	assert.Equal(t, -1, makeID(at.UnixNano(), 1).Compare(makeID(at.UnixNano(), 2)))
	assert.Equal(t, -1, makeID(at.UnixNano()-1, maxSeq).Compare(makeID(at.UnixNano(), 1)))
	assert.Equal(t, -1, idFloor(at.UnixNano()).Compare(makeID(at.UnixNano(), 1)))

	for _, bad := range []string{"", "nope", "00000000-0000-0000-0000-000000000000",
		"0190f3a2-7c1d-4a4b-8c00-000000000001", "0190f3a2-7c1d-7a4b-8c00-00000000000g", txt[:35] + "-"} {
		_, err := ParseID(bad)
		assert.ErrorIs(t, err, ErrInvalidID, bad)
	}
	b, err := json.Marshal(struct{ ID ID }{id})
	require.NoError(t, err)
	assert.Equal(t, `{"ID":"`+txt+`"}`, string(b))
}

func TestValidation(t *testing.T) {
	s, _, clock := openTest(t, nil)
	now := clock.Now()
	good := func() Activity { return act("user.login", "u1", now.Add(-time.Minute)) }
	long := strings.Repeat("x", MaxLabelBytes+1)
	cases := []struct {
		name  string
		edit  func(*Activity)
		field string
	}{
		{"empty type", func(a *Activity) { a.Type = "" }, "type"},
		{"long type", func(a *Activity) { a.Type = long }, "type"},
		{"bad utf8 type", func(a *Activity) { a.Type = "a\xffb" }, "type"},
		{"long user", func(a *Activity) { a.UserID = long }, "user_id"},
		{"bad utf8 user", func(a *Activity) { a.UserID = "\xc3" }, "user_id"},
		{"long module", func(a *Activity) { a.Module = long }, "module"},
		{"long action", func(a *Activity) { a.Action = long }, "action"},
		{"long resource", func(a *Activity) { a.Resource = long }, "resource"},
		{"long apicall", func(a *Activity) { a.APICall = strings.Repeat("x", MaxAPICallBytes+1) }, "apicall"},
		{"details array", func(a *Activity) { a.Details = json.RawMessage(`[1,2]`) }, "details"},
		{"details string", func(a *Activity) { a.Details = json.RawMessage(`"x"`) }, "details"},
		{"details broken", func(a *Activity) { a.Details = json.RawMessage(`{"a":`) }, "details"},
		{"bad utf8 details", func(a *Activity) { a.Details = json.RawMessage("{\"a\":\"\xe2\x82\"}") }, "details"},
		{"details too big", func(a *Activity) {
			a.Details = json.RawMessage(`{"a":"` + strings.Repeat("x", MaxDetailsBytes) + `"}`)
		}, "details"},
		{"before 1970", func(a *Activity) { a.Time = time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC) }, "time"},
		{"details too deep", func(a *Activity) {
			a.Details = json.RawMessage(`{"a":` + strings.Repeat("[", MaxDetailsDepth) + strings.Repeat("]", MaxDetailsDepth) + `}`)
		}, "details"},
		{"far future", func(a *Activity) { a.Time = now.Add(MaxFutureSkew + time.Second) }, "time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := good()
			tc.edit(&bad)
			_, err := s.Append(context.Background(), good(), good(), bad, good())
			require.ErrorIs(t, err, ErrInvalidActivity)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, 2, ve.Index)
			assert.Equal(t, tc.field, ve.Field)
			assert.Contains(t, err.Error(), "index 2")
			n, err := s.Query().Count(context.Background())
			require.NoError(t, err)
			assert.Zero(t, n, "a rejected batch stores nothing")
		})
	}
	// The limits themselves are accepted.
	ok := good()
	ok.Type = strings.Repeat("t", MaxLabelBytes)
	ok.Details = json.RawMessage(` {"a": [1, {"b": null}]} `)
	ok.Time = now.Add(MaxFutureSkew)
	mustAppend(t, s, ok)
	ok.Details = json.RawMessage(`{"a":"[[[{","b":` + strings.Repeat("[", MaxDetailsDepth-1) + strings.Repeat("]", MaxDetailsDepth-1) + `}`)
	mustAppend(t, s, ok) // brackets inside strings do not count

	_, err := s.Append(context.Background(), make([]Activity, MaxBatch+1)...)
	require.ErrorIs(t, err, ErrInvalidActivity)
}

// TestYearOneIsNotNow checks that a time given as the zero time in JSON is
// refused as before 1970, not taken as "no time given".
func TestYearOneIsNotNow(t *testing.T) {
	for _, name := range []string{"time", "timestamp", "created_at"} {
		var a Activity
		err := a.UnmarshalJSON([]byte(`{"type":"user.login","` + name + `":"0001-01-01T00:00:00Z"}`))
		require.ErrorIs(t, err, ErrInvalidActivity, name)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, name, ve.Field)
		assert.Contains(t, err.Error(), "before 1970")
	}
	var a Activity
	require.NoError(t, a.UnmarshalJSON([]byte(`{"type":"user.login","time":"1970-01-01T00:00:00Z"}`)))
	assert.False(t, a.Time.IsZero())
}

func TestZeroTimeIsNow(t *testing.T) {
	s, _, clock := openTest(t, nil)
	ids := mustAppend(t, s, Activity{Type: "user.login", UserID: "u1"})
	assert.Equal(t, clock.Now().UnixNano(), ids[0].UnixNano())
	a, err := s.Get(context.Background(), ids[0])
	require.NoError(t, err)
	assert.True(t, a.Time.Equal(clock.Now()))
	assert.Equal(t, time.UTC, a.Time.Location())
	assert.Nil(t, a.Details)
}

func TestOpenCloseLock(t *testing.T) {
	ctx := context.Background()
	s, dir, _ := openTest(t, nil)
	ids := mustAppend(t, s, act("user.login", "u1", testBase))

	_, err := Open(dir, nil)
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice is safe")
	_, err = s.Append(ctx, act("user.login", "u1", testBase))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Get(ctx, ids[0])
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Recent(ctx, 10, 0)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Query().Count(ctx)
	assert.ErrorIs(t, err, ErrClosed)
	for _, err := range s.Query().Iter(ctx) {
		assert.ErrorIs(t, err, ErrClosed)
	}
	_, err = s.Stats(ctx)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, s.Verify(ctx), ErrClosed)

	s2, err := Open(dir, &Options{SegmentWidth: time.Hour})
	require.ErrorIs(t, err, ErrInvalidOptions, "segment width is fixed at creation")
	assert.Nil(t, s2)
	s2, err = Open(dir, nil)
	require.NoError(t, err)
	defer s2.Close()
	a, err := s2.Get(ctx, ids[0])
	require.NoError(t, err)
	assert.Equal(t, "u1", a.UserID)
	// New IDs after a reopen never reuse old sequence numbers.
	ids2 := mustAppend(t, s2, act("user.login", "u1", testBase))
	assert.Greater(t, ids2[0].seq(), ids[0].seq())
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{SegmentWidth: time.Millisecond},
		{SealAfter: -1},
		{MemTableSize: 10},
		{BlockCacheSize: -1},
	} {
		_, err := Open(t.TempDir(), &o)
		assert.ErrorIs(t, err, ErrInvalidOptions)
	}
	var called bool
	o := &Options{Pebble: func(po *pebble.Options) { called = true }}
	s, err := Open(t.TempDir(), o)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.True(t, called)
	assert.Zero(t, o.MemTableSize, "Open does not change the caller's options")
}

func TestGetNotFound(t *testing.T) {
	s, _, _ := openTest(t, nil)
	ids := mustAppend(t, s, act("user.login", "u1", testBase))
	_, err := s.Get(context.Background(), makeID(ids[0].UnixNano(), ids[0].seq()+1))
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Get(context.Background(), NilID)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestFilters(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, &Options{SegmentWidth: time.Hour})
	at := func(m int) time.Time { return testBase.Add(time.Duration(m) * time.Minute) }
	acts := []Activity{
		{Time: at(0), Type: "user.login", UserID: "alice", Module: "auth", Action: "login"},
		{Time: at(10), Type: "model.deploy", UserID: "bob", Module: "models", Action: "deploy", Resource: "model/1"},
		{Time: at(70), Type: "model.deploy", UserID: "alice", Module: "models", Action: "deploy", Resource: "model/2"},
		{Time: at(80), Type: "service.status", Module: "cluster", Action: "update"},
		{Time: at(130), Type: "lab.create", UserID: "carol", Module: "lab", Action: "create", Resource: "lab/9"},
		{Time: at(131), Type: "user.login", UserID: "bob", Module: "auth", Action: "login"},
	}
	ids := mustAppend(t, s, acts...)
	cases := []struct {
		name string
		q    func(*Query) *Query
		want []int // indexes into acts, newest first
	}{
		{"all", func(q *Query) *Query { return q }, []int{5, 4, 3, 2, 1, 0}},
		{"type", func(q *Query) *Query { return q.Types("model.deploy") }, []int{2, 1}},
		{"types or", func(q *Query) *Query { return q.Types("user.login", "lab.create") }, []int{5, 4, 0}},
		{"user", func(q *Query) *Query { return q.Users("alice") }, []int{2, 0}},
		{"system", func(q *Query) *Query { return q.System() }, []int{3}},
		{"users empty string", func(q *Query) *Query { return q.Users("") }, []int{3}},
		{"module", func(q *Query) *Query { return q.Modules("auth") }, []int{5, 0}},
		{"action", func(q *Query) *Query { return q.Actions("deploy", "create") }, []int{4, 2, 1}},
		{"resource", func(q *Query) *Query { return q.Resources("model/2", "lab/9") }, []int{4, 2}},
		{"type and user", func(q *Query) *Query { return q.Types("model.deploy").Users("bob") }, []int{1}},
		{"and across three", func(q *Query) *Query { return q.Types("user.login").Users("bob", "alice").Modules("auth") }, []int{5, 0}},
		{"since", func(q *Query) *Query { return q.Since(at(80)) }, []int{5, 4, 3}},
		{"until", func(q *Query) *Query { return q.Until(at(80)) }, []int{2, 1, 0}},
		{"since until", func(q *Query) *Query { return q.Since(at(10)).Until(at(130)) }, []int{3, 2, 1}},
		{"empty range", func(q *Query) *Query { return q.Since(at(5)).Until(at(5)) }, nil},
		{"unknown value", func(q *Query) *Query { return q.Types("nope") }, nil},
		{"unknown or known", func(q *Query) *Query { return q.Types("nope", "lab.create") }, []int{4}},
		{"no match across fields", func(q *Query) *Query { return q.Types("lab.create").Users("bob") }, nil},
		{"skip", func(q *Query) *Query { return q.Skip(4) }, []int{1, 0}},
		{"limit", func(q *Query) *Query { return q.Limit(2) }, []int{5, 4}},
		{"skip past end", func(q *Query) *Query { return q.Skip(10) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, err := tc.q(s.Query()).All(ctx)
			require.NoError(t, err)
			var got []ID
			for _, a := range page.Activities {
				got = append(got, a.ID)
			}
			var want []ID
			for _, i := range tc.want {
				want = append(want, ids[i])
			}
			assert.Equal(t, want, got)
			n, err := tc.q(s.Query()).Count(ctx)
			require.NoError(t, err)
			if tc.name != "skip" && tc.name != "limit" && tc.name != "skip past end" {
				assert.Equal(t, len(tc.want), n)
			}
		})
	}
	recent, err := s.Recent(ctx, 3, 1)
	require.NoError(t, err)
	require.Len(t, recent, 3)
	assert.Equal(t, []ID{ids[4], ids[3], ids[2]}, []ID{recent[0].ID, recent[1].ID, recent[2].ID})
	assert.Equal(t, "service.status", recent[1].Type)
	assert.Equal(t, "", recent[1].UserID)
}

func TestQueryErrors(t *testing.T) {
	s, _, _ := openTest(t, nil)
	ctx := context.Background()
	cases := []struct {
		name  string
		q     *Query
		field string
	}{
		{"negative limit", s.Query().Limit(-1), "limit"},
		{"limit over max", s.Query().Limit(MaxLimit + 1), "limit"},
		{"negative skip", s.Query().Skip(-5), "skip"},
		{"inverted range", s.Query().Since(testBase).Until(testBase.Add(-time.Second)), "until"},
		{"bad cursor", s.Query().After("not-a-cursor"), "cursor"},
		{"foreign cursor", s.Query().After("AAAAAAAAAAAAAAAAAAAAAAA"), "cursor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.q.All(ctx)
			require.ErrorIs(t, err, ErrInvalidQuery)
			var qe *QueryError
			require.ErrorAs(t, err, &qe)
			assert.Equal(t, tc.field, qe.Field)
			for _, err := range tc.q.Iter(ctx) {
				assert.ErrorIs(t, err, ErrInvalidQuery)
			}
		})
	}
	_, err := s.Recent(ctx, MaxLimit+1, 0)
	assert.ErrorIs(t, err, ErrInvalidQuery)
	// For Iter, Limit caps the total: no page bound applies.
	mustAppend(t, s, act("a", "b", testBase))
	n := 0
	for _, err := range s.Query().Limit(MaxLimit + 1).Iter(ctx) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 1, n)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Append(cctx, act("a", "b", testBase))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestJSONForm(t *testing.T) {
	s, _, _ := openTest(t, nil)
	at := time.Date(2026, 5, 4, 3, 2, 1, 500, time.UTC)
	ids := mustAppend(t, s, Activity{Time: at, Type: "model.deploy", UserID: "u1", Module: "models",
		Action: "deploy", APICall: "POST /api/serving/deploy", Resource: "model/42", Details: json.RawMessage(`{"gpu":2}`)})
	a, err := s.Get(context.Background(), ids[0])
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, ids[0].String(), m["id"])
	assert.Equal(t, "u1", m["user_id"])
	assert.Equal(t, "models", m["module"])
	assert.Equal(t, "POST /api/serving/deploy", m["apicall"])
	assert.Equal(t, "deploy", m["action"])
	assert.Equal(t, "model.deploy", m["type"])
	assert.Equal(t, "model/42", m["resource"])
	assert.Equal(t, "2026-05-04T03:02:01.0000005Z", m["created_at"])
	assert.Equal(t, m["created_at"], m["timestamp"])
	assert.Equal(t, map[string]any{"gpu": float64(2)}, m["details"])

	var back Activity
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, a.ID, back.ID)
	assert.True(t, a.Time.Equal(back.Time))
	assert.JSONEq(t, string(a.Details), string(back.Details))

	for _, name := range []string{"time", "timestamp", "created_at"} {
		var x Activity
		require.NoError(t, json.Unmarshal([]byte(`{"type":"t","`+name+`":"2026-01-02T03:04:05Z"}`), &x))
		assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), x.Time, name)
	}
	// Decoding is strict: each mistake is a ValidationError naming the field.
	for _, tc := range []struct{ in, field string }{
		{`{"id":"bad"}`, "id"},
		{`{"type":"t","modul":"auth"}`, "modul"},
		{`{"type":7}`, "type"},
		{`{"type":"t","details":"x"}`, "details"},
		{`{"type":"t","timestamp":"yesterday"}`, "timestamp"},
		{`{"type":"t","time":12}`, "time"},
		{`["t"]`, ""},
		{`{"type":"t"} {"type":"u"}`, ""},
	} {
		var x Activity
		err := x.UnmarshalJSON([]byte(tc.in))
		var ve *ValidationError
		require.ErrorAs(t, err, &ve, tc.in)
		assert.ErrorIs(t, err, ErrInvalidActivity)
		assert.Equal(t, tc.field, ve.Field, tc.in)
	}
	var x Activity
	require.NoError(t, json.Unmarshal([]byte(`{"type":"t","user_id":null,"details":null,"time":null,"created_at":"2026-01-02T03:04:05.5+01:00"}`), &x))
	assert.Equal(t, Activity{Type: "t", Time: time.Date(2026, 1, 2, 2, 4, 5, 5e8, time.UTC)}, x)
	empty, err := json.Marshal(Activity{Type: "t"})
	require.NoError(t, err)
	assert.Contains(t, string(empty), `"details":{}`)
}

func TestSealReopenAndRepair(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour, SealAfter: time.Minute})
	var all []ID
	for h := range 5 {
		for i := range 20 {
			all = append(all, mustAppend(t, s, act("user.login", "u1", testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Minute)))...)
		}
	}
	require.NoError(t, s.sealDue(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 5, st.SealedSegments)
	// A late arrival reopens a sealed window.
	late := mustAppend(t, s, act("user.login", "u2", testBase.Add(90*time.Minute)))
	st, _ = s.Stats(ctx)
	assert.Equal(t, 4, st.SealedSegments)
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())

	// Break one sealed segment's bitmap on disk; the first read that needs
	// it rebuilds the segment from its records.
	db, err := pebble.Open(dir+"/db", &pebble.Options{})
	require.NoError(t, err)
	w := testBase.UnixNano() / int64(time.Hour)
	sl := readDescriptor(t, db, w, int64(time.Hour))
	require.NoError(t, db.Set(bitmapKey(nil, w, sl.gen, fieldType, "user.login"), []byte("garbage"), pebble.Sync))
	require.NoError(t, db.Close())

	s, err = Open(dir, &Options{Now: clock.Now, SealEvery: time.Hour, SealAfter: time.Minute})
	require.NoError(t, err)
	defer s.Close()
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, st.RepairedSegments)
	assert.Equal(t, 0, st.RebuiltActivities, "a clean Close leaves nothing to rebuild")
	assert.Equal(t, 5, st.SealedSegments)
	page, err := s.Query().Types("user.login").Limit(1000).All(ctx)
	require.NoError(t, err)
	assert.Len(t, page.Activities, 101)
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.RepairedSegments)
	assert.Equal(t, 20, st.RebuiltActivities)
	assert.Equal(t, 101, st.Activities)
	require.NoError(t, s.Verify(ctx))
	n, err := s.Query().Users("u2").Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	got, err := s.Get(ctx, late[0])
	require.NoError(t, err)
	assert.Equal(t, "u2", got.UserID)
	require.NoError(t, s.sealDue(ctx))
	st, _ = s.Stats(ctx)
	assert.Equal(t, 5, st.SealedSegments)
	require.NoError(t, s.Verify(ctx))
}

func TestVerifyReportsDisagreements(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, &Options{SegmentWidth: time.Hour})
	ids := mustAppend(t, s,
		act("user.login", "u1", testBase),
		act("user.login", "u2", testBase.Add(time.Minute)),
		act("model.deploy", "u3", testBase.Add(2*time.Minute)))
	require.NoError(t, s.Verify(ctx))

	// A record lost from pebble, and a bit lost from a bitmap.
	require.NoError(t, s.db.Delete(recordKey(nil, ids[0]), pebble.Sync))
	seg := s.segs[testBase.UnixNano()/int64(time.Hour)]
	vn, _ := s.dicts[fieldType].lookup("model.deploy")
	seg.bms[fieldType][vn].Remove(2)

	err := s.Verify(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	var ve *VerifyError
	require.ErrorAs(t, err, &ve)
	joined := strings.Join(ve.Problems, "\n")
	assert.Contains(t, joined, "ordinal 0 (ID "+ids[0].String()+") has no record")
	assert.Contains(t, joined, `type "model.deploy" missing from the bitmap`)
	assert.Contains(t, joined, "type bitmaps hold 2 ordinals for 3 activities")
	assert.GreaterOrEqual(t, len(ve.Problems), 3)

	// The missing record makes a query that finds it fail loudly, naming it.
	_, err = s.Get(ctx, ids[0])
	require.ErrorIs(t, err, ErrCorrupt)
	assert.True(t, errors.Is(err, ErrCorrupt))
	assert.Contains(t, err.Error(), ids[0].String())
}

func TestEdgeInputs(t *testing.T) {
	ctx := context.Background()
	// An ID past the int64 nanosecond range is not an activity ID.
	var big ID
	copy(big[:], []byte{0x08, 0x63, 0x7b, 0xd0, 0x5a, 0xf7, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 1})
	assert.False(t, big.valid())
	_, err := ParseID(big.String())
	assert.ErrorIs(t, err, ErrInvalidID)

	// A segment width too large for the ID range is refused before anything
	// is written.
	dir := t.TempDir()
	_, err = Open(dir, &Options{SegmentWidth: 200 * 365 * 24 * time.Hour})
	require.ErrorIs(t, err, ErrInvalidOptions)
	s, err := Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// A clock before 1970 cannot stamp a zero-time activity.
	s, _, clock := openTest(t, nil)
	clock.Set(time.Unix(-1, 0))
	_, err = s.Append(ctx, Activity{Type: "t"})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "time", ve.Field)
}

// TestMustExist checks that Open with MustExist refuses a folder that holds
// no store and leaves it as it was, and opens one that does.
func TestMustExist(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, &Options{MustExist: true})
	require.ErrorIs(t, err, ErrNoStore)
	assert.Contains(t, err.Error(), dir)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing created")
	_, err = Open(filepath.Join(dir, "missing"), &Options{MustExist: true})
	require.ErrorIs(t, err, ErrNoStore)
	assert.NoDirExists(t, filepath.Join(dir, "missing"))

	s, err := Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = Open(dir, &Options{MustExist: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// TestCountsAgreeWithStats checks Counts against Stats with windows in every
// tier: open, sealed, archived, and archived with late arrivals in pebble.
func TestCountsAgreeWithStats(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour, ColdAfter: 2 * time.Hour})
	check := func(step string) {
		t.Helper()
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		c, err := s.Counts(ctx)
		require.NoError(t, err)
		want := Counts{Activities: st.Activities, ArchivedActivities: st.ArchivedActivities, Segments: st.Segments,
			SealedSegments: st.SealedSegments, OpenSegments: st.OpenSegments, Archives: st.Archives,
			DiskBytes: c.DiskBytes, ArchiveBytes: st.ArchiveBytes, CacheBytes: st.CacheBytes}
		require.Equal(t, want, c, step)
		require.Positive(t, c.DiskBytes, step)
	}
	for h := range 6 {
		for i := range 10 {
			mustAppend(t, s, act("t", fmt.Sprintf("u%d", i%3), testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Minute)))
		}
	}
	check("open")
	clock.Set(testBase.Add(4 * time.Hour))
	require.NoError(t, SealDue(s, ctx))
	check("sealed and open")
	require.NoError(t, s.Compact(ctx))
	check("archived, sealed and open")
	mustAppend(t, s, act("t", "late", testBase.Add(30*time.Minute)))
	check("a late arrival in an archived window")
	require.NoError(t, s.Close())
	_, err := s.Counts(ctx)
	require.ErrorIs(t, err, ErrClosed)
}

// TestStatsIndexBytesOfOpenSegments checks that Stats measures an open
// segment's bitmaps again once it grew by an eighth, and not before.
func TestStatsIndexBytesOfOpenSegments(t *testing.T) {
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	clock.Set(testBase.Add(2 * time.Hour))
	ctx := context.Background()
	add := func(from, n int) {
		var acts []Activity
		for i := from; i < from+n; i++ {
			acts = append(acts, act(mTypes[i%len(mTypes)], fmt.Sprintf("user-%d", i), testBase.Add(time.Duration(i)*time.Millisecond)))
		}
		mustAppend(t, s, acts...)
	}
	index := func() int64 {
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, st.OpenSegments)
		return st.IndexBytes
	}
	add(0, 800)
	first := index()
	require.Positive(t, first)
	add(800, 100) // 900 < 800 + 800/8
	require.Equal(t, first, index(), "not measured again before growing by an eighth")
	add(900, 100)
	second := index()
	require.Greater(t, second, first)
	s.mu.RLock()
	var exact int64
	for _, seg := range s.segs {
		for f := range numFields {
			for _, bm := range seg.bms[f] {
				exact += int64(bm.GetSerializedSizeInBytes())
			}
		}
	}
	s.mu.RUnlock()
	require.Equal(t, exact, second)
}
