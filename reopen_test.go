package activitystore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCleanReopenReadsNoRecords closes a store with open and sealed
// segments and checks that the next Open reads no record and no index, that
// reads load sealed segments piece by piece, and that every answer is the
// same as before the reopen.
func TestCleanReopenReadsNoRecords(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{SegmentWidth: 24 * time.Hour})
	clock.Set(testBase.Add(6 * 24 * time.Hour))
	ids := fillDays(t, s, 5, 200)
	// Seal the first days; the others stay open until Close.
	clock.Set(testBase.Add(2*24*time.Hour + time.Hour))
	require.NoError(t, s.sealDue(ctx))
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, st.SealedSegments)
	require.Equal(t, 3, st.OpenSegments)
	before := snapshotQueries(t, s)
	require.NoError(t, s.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now})
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, st.RebuiltSegments)
	assert.Equal(t, 0, st.RebuiltActivities)
	assert.Equal(t, 0, st.OpenSegments)
	assert.Equal(t, int64(0), st.OpenBytes)
	assert.Equal(t, 5, st.SealedSegments)
	assert.Equal(t, 5, st.Segments)
	assert.Equal(t, int64(0), st.SegmentLoads, "Open reads descriptors only")
	assert.Equal(t, int64(0), st.CacheBytes)
	assert.Equal(t, 1000, st.Activities)
	assert.NotZero(t, st.IndexBytesByField["user_id"], "index sizes come from the descriptors")

	assert.Equal(t, before, snapshotQueries(t, s))
	for _, id := range ids[:20] {
		a, err := s.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, id, a.ID)
	}
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	assert.NotZero(t, st.SegmentLoads)
	assert.NotZero(t, st.CacheBytes)
	assert.Equal(t, 0, st.OpenSegments, "reads do not open segments")
	require.NoError(t, s.Verify(ctx))
}

// TestSealedSegmentsCacheBound reads every sealed segment through a cache
// far smaller than the indexes: the cache stays within its bound, evicted
// pieces are read again, and the answers do not change.
func TestSealedSegmentsCacheBound(t *testing.T) {
	ctx := context.Background()
	const limit = 24 << 10
	s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	clock.Set(testBase.Add(30 * 24 * time.Hour))
	var acts []Activity
	for h := range 48 {
		for i := range 150 {
			at := testBase.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second*20)
			a := act(fmt.Sprintf("t%d", i%3), fmt.Sprintf("u%d", (i+h)%40), at)
			a.Resource = fmt.Sprintf("r/%d", i%4)
			acts = append(acts, a)
		}
	}
	mustAppend(t, s, acts...)
	before := snapshotQueries(t, s)
	var perUser []int
	for u := range 40 {
		n, err := s.Query().Users(fmt.Sprintf("u%d", u)).Count(ctx)
		require.NoError(t, err)
		perUser = append(perUser, n)
	}
	require.NoError(t, s.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now, CacheBytes: limit})
	for round := range 2 {
		assert.Equal(t, before, snapshotQueries(t, s), "round %d", round)
		for u := range 40 {
			n, err := s.Query().Users(fmt.Sprintf("u%d", u)).Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, perUser[u], n)
		}
		counts, err := s.Query().CountBy(ctx, "user_id")
		require.NoError(t, err)
		assert.Len(t, counts, 40)
		st, err := s.Stats(ctx)
		require.NoError(t, err)
		assert.LessOrEqual(t, st.CacheBytes, int64(limit))
		assert.Equal(t, int64(limit), st.CacheLimit)
		assert.Equal(t, 0, st.OpenSegments)
	}
	st1, _ := s.Stats(ctx)
	snapshotQueries(t, s)
	st2, _ := s.Stats(ctx)
	assert.Greater(t, st2.SegmentLoads, st1.SegmentLoads, "evicted pieces are read again")
}

// TestAppendIntoSealedWindow appends late activities into a sealed window:
// the window opens again with its sealed index, and the next seal (here
// Close) writes the whole of it.
func TestAppendIntoSealedWindow(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour, CacheBytes: 8 << 10})
	clock.Set(testBase.Add(10 * time.Hour))
	fillHours := func(h, n int, typ string) {
		var acts []Activity
		for i := range n {
			acts = append(acts, act(typ, fmt.Sprintf("u%d", i%3), testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Second)))
		}
		mustAppend(t, s, acts...)
	}
	fillHours(0, 100, "a")
	fillHours(1, 100, "a")
	require.NoError(t, s.sealDue(ctx))
	st, _ := s.Stats(ctx)
	require.Equal(t, 0, st.OpenSegments)
	// Read it while sealed, so the cache holds pieces of the old form.
	n, err := s.Query().Types("a").Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, n)
	// Late arrivals, between the sealed ones.
	var late []Activity
	for i := range 30 {
		late = append(late, act("b", "u9", testBase.Add(time.Duration(i)*2*time.Second+500*time.Millisecond)))
	}
	lateIDs := mustAppend(t, s, late...)
	st, _ = s.Stats(ctx)
	assert.Equal(t, 1, st.OpenSegments)
	assert.Equal(t, 230, st.Activities)
	page, err := s.Query().Users("u9").Limit(100).All(ctx)
	require.NoError(t, err)
	require.Len(t, page.Activities, 30)
	got := make([]ID, 0, 30)
	for _, a := range page.Activities {
		got = append(got, a.ID)
	}
	want := slices.Clone(lateIDs)
	slices.SortFunc(want, func(a, b ID) int { return b.Compare(a) })
	assert.Equal(t, want, got)
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.sealDue(ctx))
	n, err = s.Query().Types("b").Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30, n)
	all, err := s.Query().Since(testBase).Until(testBase.Add(time.Hour)).Skip(10).Limit(500).All(ctx)
	require.NoError(t, err)
	assert.Len(t, all.Activities, 120)
	require.NoError(t, s.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now})
	st, _ = s.Stats(ctx)
	assert.Equal(t, 0, st.RebuiltActivities)
	assert.Equal(t, 230, st.Activities)
	require.NoError(t, s.Verify(ctx))
}

// TestUpgradeFormat1 opens a store whose sealed segments are in the first
// format (one value per field): Open drops them and rebuilds the windows from
// their records, once.
func TestUpgradeFormat1(t *testing.T) {
	ctx := context.Background()
	s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	clock.Set(testBase.Add(10 * time.Hour))
	for h := range 3 {
		for i := range 20 {
			mustAppend(t, s, act("t", "u", testBase.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Minute)))
		}
	}
	before := snapshotQueries(t, s)
	require.NoError(t, s.Close())

	// Rewrite it as a format 1 store would be: per-field parts and no
	// descriptors.
	db, err := pebble.Open(dir+"/db", &pebble.Options{})
	require.NoError(t, err)
	b := db.NewBatch()
	b.DeleteRange([]byte{prefixDescriptor}, []byte{prefixDescriptor + 1}, nil)
	b.DeleteRange([]byte{prefixSegment}, []byte{prefixSegment + 1}, nil)
	for h := range 3 {
		w := testBase.Add(time.Duration(h)*time.Hour).UnixNano() / int64(time.Hour)
		for _, part := range []byte("01234hi") {
			b.Set(append(windowKey(prefixSegment, w), part), []byte("old"), nil)
		}
	}
	b.Set(metaFormat, binary.BigEndian.AppendUint64(nil, 1), nil)
	require.NoError(t, b.Commit(pebble.Sync))
	require.NoError(t, db.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now})
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, st.RebuiltSegments)
	assert.Equal(t, 60, st.RebuiltActivities)
	assert.Equal(t, before, snapshotQueries(t, s))
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())

	s = reopenTest(t, dir, &Options{Now: clock.Now})
	st, err = s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, st.RebuiltActivities)
	assert.Equal(t, 3, st.SealedSegments)
	format, _, err := s.metaUint64(metaFormat)
	require.NoError(t, err)
	assert.Equal(t, uint64(storeFormat), format)
}

// TestRecoverFromCheckpoint checks the crash recovery of an open window
// that was checkpointed: its written form plus the records its append log
// names give the same index as the one in memory, reading only those
// records.
func TestRecoverFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour, checkpoint: 10})
	clock.Set(testBase.Add(30 * time.Minute)) // the window of testBase is open
	at := func(i int) time.Time { return testBase.Add(time.Duration(i) * time.Second) }
	var first []Activity
	for i := range 30 {
		first = append(first, act(fmt.Sprintf("t%d", i%3), fmt.Sprintf("u%d", i%4), at(2*i)))
	}
	mustAppend(t, s, first...)
	require.NoError(t, s.sealDue(ctx)) // 30 logged >= 10: a checkpoint
	w := testBase.UnixNano() / int64(time.Hour)
	v, c, err := s.db.Get(windowKey(prefixDescriptor, w))
	require.NoError(t, err)
	sl, err := decodeDescriptor(w, int64(time.Hour), v)
	require.NoError(t, err)
	c.Close()
	require.Equal(t, 30, sl.n)
	st, _ := s.Stats(ctx)
	require.Equal(t, 1, st.OpenSegments, "a checkpoint keeps the window open")

	// More appends, some between the written ones (late).
	var more []Activity
	for i := range 15 {
		more = append(more, act("t9", "u9", at(2*i+1)))
	}
	mustAppend(t, s, more...)
	before := s.rebuiltActs.Load()
	rec, err := s.recover(w, sl)
	require.NoError(t, err)
	assert.Equal(t, int64(15), s.rebuiltActs.Load()-before, "only the logged records are read")

	s.mu.RLock()
	live := s.segs[w]
	s.mu.RUnlock()
	members := func(seg *segment) map[string][]ID {
		out := map[string][]ID{}
		for f := range numFields {
			for vn, bm := range seg.bms[f] {
				var ids []ID
				for _, o := range bm.ToArray() {
					ids = append(ids, seg.ids[o])
				}
				slices.SortFunc(ids, ID.Compare)
				out[fmt.Sprintf("%s=%s", field(f), s.dicts[f].value(vn))] = ids
			}
		}
		return out
	}
	sortedIDs := func(seg *segment) []ID {
		ids := slices.Clone(seg.ids)
		slices.SortFunc(ids, ID.Compare)
		return ids
	}
	live.mu.RLock()
	defer live.mu.RUnlock()
	assert.Equal(t, sortedIDs(live), sortedIDs(rec))
	assert.Equal(t, members(live), members(rec))

	// A log that names a record that is gone makes recovery read every
	// record of the window instead.
	gone := makeID(at(100).UnixNano(), 1<<40)
	require.NoError(t, s.db.Set(logKey(w, 1<<40), appendCRC(gone[:]), pebble.Sync))
	before = s.rebuiltActs.Load()
	rec, err = s.recover(w, sl)
	require.NoError(t, err)
	assert.Equal(t, int64(45), s.rebuiltActs.Load()-before)
	assert.Equal(t, sortedIDs(live), sortedIDs(rec))
}

// reopenTest opens the store in dir again, after its Close, with no
// background sealing, closing it when the test ends.
func reopenTest(t *testing.T, dir string, o *Options) *Store {
	t.Helper()
	o.SealEvery = time.Hour
	s, err := Open(dir, o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSparseValuesKeepIDs checks that a sealed segment keeps the IDs of a
// sparse value beside its bitmap, and for a sparse user copies of its
// records: a query for a light user reads one key per window, no chunk of
// the ID column and no record; a store sealed without them answers the same
// from its chunks and records; Verify catches inline IDs that disagree with
// the column and copies that differ from their records.
func TestSparseValuesKeepIDs(t *testing.T) {
	ctx := context.Background()
	fill := func(inline, copies int) (string, []ID) {
		s, dir, clock := openTest(t, &Options{SegmentWidth: time.Hour, inline: inline, UserCopies: copies})
		clock.Set(testBase.Add(24 * time.Hour))
		acts := hourlyActs("user.login", 3, 300, func(i int) bool { return i%100 == 7 })
		ids := mustAppend(t, s, acts...)
		require.NoError(t, s.Close())
		var light []ID
		for i, a := range acts {
			if a.UserID == "light" {
				light = append(light, ids[i])
			}
		}
		slices.Reverse(light)
		return dir, light
	}
	// query returns the IDs of user's newest limit activities, the pieces
	// of sealed segments and the records read for them.
	query := func(s *Store, user string, limit int) ([]ID, int64, int64) {
		before, err := s.Stats(ctx)
		require.NoError(t, err)
		page, err := s.Query().Users(user).Limit(limit).All(ctx)
		require.NoError(t, err)
		after, err := s.Stats(ctx)
		require.NoError(t, err)
		var got []ID
		for _, a := range page.Activities {
			got = append(got, a.ID)
			assert.Equal(t, user, a.UserID)
			assert.Equal(t, "user.login", a.Type)
		}
		return got, after.SegmentLoads - before.SegmentLoads, after.RecordReads - before.RecordReads
	}

	dir, light := fill(0, 0)
	require.Len(t, light, 9)
	s := reopenTest(t, dir, &Options{})
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(9*16), st.IDColumnBytes-3*300*16, "the column, and the light user's IDs beside its bitmaps")
	got, loads, reads := query(s, "light", 50)
	assert.Equal(t, light, got)
	assert.Equal(t, int64(3), loads, "one value per window, no ID chunk")
	assert.Zero(t, reads, "every record from the copies beside the bitmaps")
	got, loads, _ = query(s, "light", 50)
	assert.Equal(t, light, got)
	assert.Zero(t, loads, "cached")
	heavy, loads, reads := query(s, "heavy", 5)
	assert.Len(t, heavy, 5)
	assert.Equal(t, int64(2), loads, "a dense value reads its bitmap and a chunk")
	assert.Equal(t, int64(5), reads, "a dense value keeps no copies")
	require.NoError(t, s.Verify(ctx))
	require.NoError(t, s.Close())

	// Sealed with fewer pieces beside the bitmaps: the same answer, from
	// chunks and records.
	for _, c := range []struct {
		inline, copies int
		loads          int64
		what           string
	}{
		{-1, -1, 6, "without inline IDs: a value and a chunk per window"},
		{0, -1, 3, "inline IDs without copies: one value per window"},
	} {
		dir, light := fill(c.inline, c.copies)
		s := reopenTest(t, dir, &Options{})
		got, loads, reads := query(s, "light", 50)
		assert.Equal(t, light, got)
		assert.Equal(t, c.loads, loads, c.what)
		assert.Equal(t, int64(9), reads)
		require.NoError(t, s.Close())
	}

	// A copy in the user's entry that differs from its record, then inline
	// IDs that disagree with the ID column (in the value and the entry
	// alike), each under a good checksum.
	tamper := func(change func(db *pebble.DB, w int64, sl *sealedSeg)) error {
		db, err := pebble.Open(dir+"/db", &pebble.Options{})
		require.NoError(t, err)
		w := testBase.UnixNano() / int64(time.Hour)
		sl := readDescriptor(t, db, w, int64(time.Hour))
		require.Equal(t, inlineIDs, sl.copies)
		require.True(t, sl.far)
		change(db, w, sl)
		require.NoError(t, db.Close())
		s := reopenTest(t, dir, &Options{})
		err = s.Verify(ctx)
		require.NoError(t, s.Close())
		return err
	}
	// edit rewrites the value of k, under a good checksum.
	edit := func(db *pebble.DB, k []byte, change func(body []byte)) {
		v, c, err := db.Get(k)
		require.NoError(t, err)
		body := slices.Clone(v[:len(v)-4])
		c.Close()
		change(body)
		require.NoError(t, db.Set(k, appendCRC(body), pebble.Sync))
	}
	err = tamper(func(db *pebble.DB, w int64, sl *sealedSeg) {
		edit(db, bitmapKey(nil, w, sl.gen, fieldUser, "light"), func(body []byte) {
			_, used, err := decodeBitmapPrefix(body, sl.n, false)
			require.NoError(t, err)
			require.Equal(t, []byte{2}, body[used+3*16:], "the copies are in the user's entry")
		})
		edit(db, userKey(nil, "light", w, sl.gen), func(body []byte) {
			require.Equal(t, byte(1), body[0], "an entry with copies")
			body[len(body)-1] ^= 1
		})
	})
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "the copy its user_id keeps in segment")
	err = tamper(func(db *pebble.DB, w int64, sl *sealedSeg) {
		// the last ID, one sequence number lower: still in order
		edit(db, bitmapKey(nil, w, sl.gen, fieldUser, "light"), func(body []byte) {
			_, used, err := decodeBitmapPrefix(body, sl.n, false)
			require.NoError(t, err)
			body[used+3*16-1]--
		})
		edit(db, userKey(nil, "light", w, sl.gen), func(body []byte) {
			_, used, err := decodeBitmapPrefix(body[1:], sl.n, false)
			require.NoError(t, err)
			body[1+used+3*16-1]--
		})
	})
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "disagree with the ID column")
}

// readDescriptor reads the descriptor of window w's sealed segment from a
// closed store's pebble database.
func readDescriptor(t *testing.T, db *pebble.DB, w, width int64) *sealedSeg {
	t.Helper()
	v, c, err := db.Get(windowKey(prefixDescriptor, w))
	require.NoError(t, err)
	defer c.Close()
	sl, err := decodeDescriptor(w, width, v)
	require.NoError(t, err)
	return sl
}

// TestResealKeepsCopies checks that a window sealed again after a late
// arrival takes the record copies of its previous sealed form and reads
// only the new records, and that the copies stay right.
func TestResealKeepsCopies(t *testing.T) {
	ctx := context.Background()
	s, _, clock := openTest(t, &Options{SegmentWidth: time.Hour})
	clock.Set(testBase.Add(24 * time.Hour))
	var acts []Activity
	for i := range 300 {
		user := fmt.Sprintf("u%d", i%30) // 10 each: every user has copies
		acts = append(acts, act("t", user, testBase.Add(time.Duration(i)*time.Second)))
	}
	mustAppend(t, s, acts...)
	require.NoError(t, SealDue(s, ctx))
	require.Equal(t, int64(300), s.copyReads.Load(), "the first seal reads every record")

	late := mustAppend(t, s, act("t", "u3", testBase.Add(20*time.Minute)), act("t", "new", testBase.Add(21*time.Minute)))
	require.NoError(t, SealDue(s, ctx))
	require.Equal(t, int64(302), s.copyReads.Load(), "sealing again reads the 2 new records only")
	require.NoError(t, s.Verify(ctx))

	before := s.recordReads.Load()
	page, err := s.Query().Users("u3").All(ctx)
	require.NoError(t, err)
	require.Len(t, page.Activities, 11)
	require.Contains(t, []ID{page.Activities[0].ID, page.Activities[1].ID}, late[0])
	page, err = s.Query().Users("new").All(ctx)
	require.NoError(t, err)
	require.Len(t, page.Activities, 1)
	require.Equal(t, late[1], page.Activities[0].ID)
	require.Equal(t, before, s.recordReads.Load(), "both users read from copies")
}
