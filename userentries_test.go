package activitystore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// userEntries returns how many user entries pebble holds, per window.
func userEntries(t *testing.T, s *Store) map[int64]int {
	t.Helper()
	n := map[int64]int{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixUser}, UpperBound: []byte{prefixUser + 1}})
	require.NoError(t, err)
	for it.First(); it.Valid(); it.Next() {
		_, w, _, ok := userKeyParts(it.Key())
		require.True(t, ok, "key %x", it.Key())
		n[w]++
	}
	require.NoError(t, it.Close())
	return n
}

// cachedUser reports what the cache holds for user v in the sealed segment
// of window w: whether it holds anything, and whether that is a value.
func cachedUser(s *Store, w int64, v string) (held, present bool) {
	s.mu.RLock()
	sl := s.sealed[w]
	s.mu.RUnlock()
	x, ok := s.cache.Get(cacheKey{sl: sl, i: -1, f: copyField, v: v})
	return ok, ok && x.(*sealedValue) != nil
}

// TestUserEntries checks the user entries of sealed segments: one per user
// and window, read newest window first by one scan that fills the cache
// for the windows it passes (a value, or none where the user has no
// activity) and stops at a window where the user has too many activities
// for copies; they are replaced when a window is sealed again and deleted
// with it when it is archived or dropped; Verify reports an entry no
// segment names; a corrupt one is rebuilt like the rest of its segment.
func TestUserEntries(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, &Options{SegmentWidth: time.Hour, ColdAfter: 46 * time.Hour})
	hour := func(h int) int64 { return testBase.Add(time.Duration(h)*time.Hour).UnixNano() / int64(time.Hour) }
	at := func(h, i int) time.Time {
		return testBase.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second)
	}
	var acts []Activity
	for h := range 6 {
		for i := range 200 {
			acts = append(acts, act("t", "heavy", at(h, i)))
		}
		if h != 3 { // light has none in window 3
			acts = append(acts, act("t", "light", at(h, 300)), act("t", "light", at(h, 301)))
		}
		n := 2
		if h == 3 { // mixed has too many in window 3 for copies
			n = inlineIDs + 10
		}
		for i := range n {
			acts = append(acts, act("t", "mixed", at(h, 400+i)))
		}
	}
	ids := mustAppend(t, s, acts...)
	require.NoError(t, s.sealDue(ctx))
	newest := func(user string, limit int) []ID {
		var out []ID
		for i, a := range acts {
			if a.UserID == user {
				out = append(out, ids[i])
			}
		}
		slices.SortFunc(out, func(a, b ID) int { return b.Compare(a) })
		return out[:min(limit, len(out))]
	}
	page := func(user string) []ID {
		p, err := s.Query().Users(user).Limit(50).All(ctx)
		require.NoError(t, err)
		var got []ID
		for _, a := range p.Activities {
			got = append(got, a.ID)
		}
		return got
	}

	want := map[int64]int{}
	for h := range 6 {
		want[hour(h)] = 3
	}
	want[hour(3)] = 2
	require.Equal(t, want, userEntries(t, s), "an entry per user and window")
	require.NoError(t, s.Verify(ctx))

	// One lookup of the newest window reads every window of light.
	s.mu.RLock()
	sl := s.sealed[hour(5)]
	s.mu.RUnlock()
	require.True(t, sl.far)
	sv, err := s.sealedBitmap(sl, copyField, "light")
	require.NoError(t, err)
	require.Len(t, sv.recs, 2, "the copies come with the value")
	for h := range 6 {
		held, present := cachedUser(s, hour(h), "light")
		assert.True(t, held, "window %d cached", h)
		assert.Equal(t, h != 3, present, "window %d", h)
	}
	before := s.recordReads.Load()
	assert.Equal(t, newest("light", 50), page("light"))
	assert.Equal(t, before, s.recordReads.Load(), "every record from the copies")

	// mixed: the scan stops at window 3, which has no copies for it.
	sv, err = s.sealedBitmap(sl, copyField, "mixed")
	require.NoError(t, err)
	require.Len(t, sv.recs, 2)
	for h := range 6 {
		held, _ := cachedUser(s, hour(h), "mixed")
		assert.Equal(t, h >= 4, held, "window %d cached", h)
	}
	assert.Equal(t, newest("mixed", 50), page("mixed"))
	assert.Equal(t, newest("heavy", 50), page("heavy"))

	// A late arrival seals window 1 again: its entries are replaced.
	late := mustAppend(t, s, act("t", "light", at(1, 500)), act("t", "new", at(1, 501)))
	ids = append(ids, late...)
	acts = append(acts, act("t", "light", at(1, 500)), act("t", "new", at(1, 501)))
	require.NoError(t, s.sealDue(ctx))
	want[hour(1)] = 4
	require.Equal(t, want, userEntries(t, s))
	require.NoError(t, s.Verify(ctx))
	assert.Equal(t, newest("light", 50), page("light"))
	assert.Equal(t, newest("new", 50), page("new"))

	// An entry no segment names: Verify reports it, queries pass it by.
	stray := userKey(nil, "light", hour(2), 1)
	require.NoError(t, s.db.Set(stray, appendCRC([]byte{0}), pebble.Sync))
	err = s.Verify(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), fmt.Sprintf("names segment %d generation 1, which pebble does not hold", hour(2)))
	s.cache.RemoveIf(func(cacheKey) bool { return true })
	assert.Equal(t, newest("light", 50), page("light"))
	require.NoError(t, s.db.Delete(stray, pebble.Sync))

	// A corrupt entry: the segment is rebuilt from its records.
	s.mu.RLock()
	sl = s.sealed[hour(5)]
	s.mu.RUnlock()
	require.NoError(t, s.db.Set(userKey(nil, "light", hour(5), sl.gen), []byte("garbage!"), pebble.Sync))
	s.cache.RemoveIf(func(cacheKey) bool { return true })
	s.records.c.RemoveIf(func(ID) bool { return true })
	assert.Equal(t, newest("light", 50), page("light"))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.RepairedSegments)
	require.NoError(t, s.Verify(ctx), "open until the next seal, which replaces the entries")
	require.NoError(t, s.sealDue(ctx))
	require.Equal(t, want, userEntries(t, s))
	require.NoError(t, s.Verify(ctx))
	s.cache.RemoveIf(func(cacheKey) bool { return true })
	assert.Equal(t, newest("light", 50), page("light"))

	// Windows 0 and 1 go to archives, then window 2 is dropped: their
	// entries go with them.
	require.NoError(t, s.Compact(ctx))
	delete(want, hour(0))
	delete(want, hour(1))
	require.Equal(t, want, userEntries(t, s))
	require.NoError(t, s.DropBefore(ctx, testBase.Add(3*time.Hour)))
	delete(want, hour(2))
	require.Equal(t, want, userEntries(t, s))
	require.NoError(t, s.Verify(ctx))
	var kept []ID
	for _, id := range newest("light", 50) {
		if id.Compare(idFloor(testBase.Add(3*time.Hour).UnixNano())) >= 0 {
			kept = append(kept, id)
		}
	}
	assert.Equal(t, kept, page("light"))
}

// TestSealedVersion5 opens a store whose sealed segments keep the copies of
// light users' records in their value keys (descriptor version 5, before
// user entries): queries answer from those copies, Verify passes, and a
// window sealed again gets user entries.
func TestSealedVersion5(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	acts := hourlyActs("t", 3, 100, func(i int) bool { return i%25 == 0 })
	ids := mustAppend(t, s, acts...)
	require.NoError(t, s.sealDue(ctx))
	require.NoError(t, s.Close())

	// Rewrite every sealed segment as version 5 wrote it.
	db, err := pebble.Open(dir+"/db", &pebble.Options{})
	require.NoError(t, err)
	b := db.NewBatch()
	for h := range 3 {
		w := testBase.Add(time.Duration(h)*time.Hour).UnixNano() / int64(time.Hour)
		sl := readDescriptor(t, db, w, int64(time.Hour))
		require.True(t, sl.far)
		for _, user := range []string{"light", "heavy"} {
			uk := userKey(nil, user, w, sl.gen)
			entry, c, err := db.Get(uk)
			require.NoError(t, err)
			entry = slices.Clone(entry)
			c.Close()
			require.NoError(t, b.Delete(uk, nil))
			if user == "light" {
				// The entry is a byte 1 and the value with its copies.
				require.Equal(t, byte(1), entry[0])
				require.NoError(t, b.Set(bitmapKey(nil, w, sl.gen, fieldUser, user), appendCRC(entry[1:len(entry)-4]), nil))
			}
		}
		desc := sl.encode()
		desc = appendCRC(append([]byte{5}, desc[1:len(desc)-4]...))
		require.NoError(t, b.Set(windowKey(prefixDescriptor, w), desc, nil))
	}
	require.NoError(t, b.Commit(pebble.Sync))
	require.NoError(t, db.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now})
	for _, sl := range s.sealed {
		require.False(t, sl.far)
	}
	require.Empty(t, userEntries(t, s))
	var want []ID
	for i := len(acts) - 1; i >= 0; i-- {
		if acts[i].UserID == "light" {
			want = append(want, ids[i])
		}
	}
	page := func() []ID {
		p, err := s.Query().Users("light").All(ctx)
		require.NoError(t, err)
		var got []ID
		for _, a := range p.Activities {
			got = append(got, a.ID)
		}
		return got
	}
	before := s.recordReads.Load()
	assert.Equal(t, want, page())
	assert.Equal(t, before, s.recordReads.Load(), "from the copies in the value keys")
	require.NoError(t, s.Verify(ctx))

	// A late arrival: window 0 is sealed again, now with user entries.
	late := mustAppend(t, s, act("t", "light", testBase.Add(30*time.Minute)))
	require.NoError(t, s.sealDue(ctx))
	w0 := testBase.UnixNano() / int64(time.Hour)
	require.Equal(t, map[int64]int{w0: 2}, userEntries(t, s))
	require.NoError(t, s.Verify(ctx))
	want = append(want, late[0])
	slices.SortFunc(want, func(a, b ID) int { return b.Compare(a) })
	assert.Equal(t, want, page())
}

// TestUserScanRace seals a window again between the moment a scan of a
// user's entries takes the store's windows and the moment it reads: the
// replaced segment, which a reader may still hold, is not recorded as
// lacking the user (its entries are gone, not absent); the new one's value
// is read from the scan.
func TestUserScanRace(t *testing.T) {
	ctx := context.Background()
	var s *Store
	var once sync.Once
	hour := func(h int) int64 { return testBase.Add(time.Duration(h)*time.Hour).UnixNano() / int64(time.Hour) }
	late := act("t", "light", testBase.Add(30*time.Minute))
	hook := func(step string) {
		if step == "userscan" {
			once.Do(func() {
				mustAppend(t, s, late)
				require.NoError(t, s.sealDue(ctx))
			})
		}
	}
	s, _, _ = openTest(t, &Options{SegmentWidth: time.Hour, hook: hook})
	acts := hourlyActs("t", 3, 50, func(i int) bool { return i%10 == 0 })
	mustAppend(t, s, acts...)
	require.NoError(t, s.sealDue(ctx))
	s.mu.RLock()
	old, newest := s.sealed[hour(0)], s.sealed[hour(2)]
	s.mu.RUnlock()

	sv, err := s.sealedBitmap(newest, copyField, "light")
	require.NoError(t, err)
	require.Len(t, sv.ids, 5)
	s.mu.RLock()
	renewed := s.sealed[hour(0)]
	s.mu.RUnlock()
	require.NotSame(t, old, renewed, "window 0 was sealed again during the scan")
	_, held := s.cache.Get(cacheKey{sl: old, i: -1, f: copyField, v: "light"})
	assert.False(t, held, "the replaced segment is not recorded as lacking the user")
	x, held := s.cache.Get(cacheKey{sl: renewed, i: -1, f: copyField, v: "light"})
	if held {
		assert.Len(t, x.(*sealedValue).ids, 6, "the new segment's value, late arrival included")
	}
	_, err = s.sealedBitmap(old, copyField, "light")
	var sf *sealedFault
	require.ErrorAs(t, err, &sf, "a reader holding the replaced segment runs again")
	assert.True(t, sf.stale)
	page, err := s.Query().Users("light").All(ctx)
	require.NoError(t, err)
	assert.Len(t, page.Activities, 16)
}

// hourlyActs returns per activities of type typ in each of the first hours
// hours from testBase, a second apart: the i-th of each hour by user
// "light" when light(i), else by "heavy".
func hourlyActs(typ string, hours, per int, light func(i int) bool) []Activity {
	var acts []Activity
	for h := range hours {
		for i := range per {
			user := "heavy"
			if light(i) {
				user = "light"
			}
			acts = append(acts, act(typ, user, testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Second)))
		}
	}
	return acts
}
