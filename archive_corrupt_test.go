package activitystore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
)

// corruptFixture is a closed store with days 0-4 archived (several blocks
// per archive) and days 5-6 hot, to copy and damage.
type corruptFixture struct {
	dir   string
	want  map[ID]Activity
	byDay map[int][]ID // newest first
	names map[int]string
	ft    *arcfmt.Footer // footer of day 2's archive
	size  int64          // size of day 2's archive
}

// victim is the day whose archive the corruption tests damage.
const victim = 2

func newCorruptFixture(t *testing.T) *corruptFixture {
	t.Helper()
	fx := &corruptFixture{dir: t.TempDir(), want: map[ID]Activity{}, byDay: map[int][]ID{}, names: map[int]string{}}
	o := arcOpts()
	o.blockBytes = 1000 // four or five blocks per archive
	// No copy blocks: every read of a record reads its block. Copy blocks
	// have their own test (TestArchiveCopyBlockCorrupt).
	o.UserCopies = -1
	s, err := Open(fx.dir, o)
	require.NoError(t, err)
	defer s.Close()
	appendAll(t, s, fx.want, variedActs([]int{0, 1, 2, 3, 4, 5, 6}, 60, 0))
	require.NoError(t, s.Compact(context.Background()))
	for _, id := range idsDesc(fx.want) {
		d := int(id.Time().Sub(testBase) / (24 * time.Hour))
		fx.byDay[d] = append(fx.byDay[d], id)
	}
	arcs := archiveNames(s)
	require.Len(t, arcs, 5)
	for d := range 5 {
		fx.names[d] = arcs[windowOf(d)]
		require.NotEmpty(t, fx.names[d])
	}
	require.NoError(t, s.Close())

	f, err := os.Open(fx.path(fx.dir, victim))
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	fx.size = st.Size()
	fx.ft, err = arcfmt.ReadFooter(f, fx.size)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(fx.ft.Blocks), 3, "the tests want several blocks")
	return fx
}

func (fx *corruptFixture) path(dir string, d int) string {
	return filepath.Join(dir, "archive", fx.names[d])
}

// copy returns a fresh copy of the fixture's store.
func (fx *corruptFixture) copy(t *testing.T) string {
	dir := t.TempDir()
	copyDir(t, fx.dir, dir)
	return dir
}

// blockIDs returns the IDs in block i of the victim's archive.
func (fx *corruptFixture) blockIDs(i int) []ID {
	b := fx.ft.Blocks[i]
	// Position p (0 is the newest) is the p-th ID of the day, newest first.
	return fx.byDay[victim][b.First : b.First+b.Count]
}

// idsOfDays returns the IDs of days, newest first.
func (fx *corruptFixture) idsOfDays(days ...int) []ID {
	var out []ID
	for _, d := range days {
		out = append(out, fx.byDay[d]...)
	}
	slices.SortFunc(out, func(a, b ID) int { return b.Compare(a) })
	return out
}

func flipBit(t *testing.T, path string, off int64, bit byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Less(t, off, int64(len(b)))
	b[off] ^= bit
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// requireCorruptNaming checks that err is a corruption error naming file.
func requireCorruptNaming(t *testing.T, err error, file string, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, ErrCorrupt, msgAndArgs...)
	require.Contains(t, err.Error(), file, msgAndArgs...)
}

// TestArchiveCorrupt damages one archive file in many ways and checks that
// the store opens, reports the damage as ErrCorrupt naming the file wherever
// the damaged part is needed, and keeps answering from every other window.
func TestArchiveCorrupt(t *testing.T) {
	fx := newCorruptFixture(t)
	ft, size := fx.ft, fx.size
	last := len(ft.Blocks) - 1
	require.Equal(t, arcfmt.Format, ft.Format)
	footerStart := ft.Head.Off + int64(ft.Head.CLen) // the footer follows the head
	footerLen := size - arcfmt.TrailerSize - footerStart
	truncate := func(n int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, n)) }
	}
	flip := func(off int64, bit byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) { flipBit(t, path, off, bit) }
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		// badBlock >= 0: only that block is damaged; the index still
		// loads, so counts work and the other blocks still read.
		badBlock int
	}{
		{"truncate-0", truncate(0), -1},
		{"truncate-10", truncate(10), -1},
		{"truncate-half", truncate(size / 2), -1},
		{"truncate-size-1", truncate(size - 1), -1},
		{"flip-first-block", flip(ft.Blocks[0].Off+int64(ft.Blocks[0].CLen)/2, 0x10), 0},
		{"flip-last-block", flip(ft.Blocks[last].Off+int64(ft.Blocks[last].CLen)/2, 0x01), last},
		{"flip-head", flip(ft.Head.Off+int64(ft.Head.CLen)/2, 0x04), -1},
		{"flip-footer", flip(footerStart+footerLen/2, 0x80), -1},
		{"flip-footer-first-byte", flip(footerStart, 0x02), -1},
		{"flip-trailer-crc", flip(size-arcfmt.TrailerSize, 0x01), -1},
		{"flip-trailer-length", flip(size-arcfmt.TrailerSize+7, 0x01), -1},
		{"flip-trailer-magic", flip(size-1, 0x40), -1},
		{"flip-header-magic", flip(0, 0x01), -1},
		{"flip-header-version", flip(9, 0x02), -1},
		{"foreign-json", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte(`{"note":"not an archive","items":[1,2,3],"more":"padding to pass the size check"}`+"\n"), 0o644))
		}, -1},
		{"foreign-short", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("{}\n"), 0o644))
		}, -1},
		{"other-window-archive", func(t *testing.T, path string) {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(path), fx.names[victim+1]))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, b, 0o644))
		}, -1},
		{"appended-garbage", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString("garbage")
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, -1},
		{"deleted", func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) }, -1},
	}
	ctx := context.Background()
	name := fx.names[victim]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := fx.copy(t)
			tc.damage(t, fx.path(dir, victim))
			s, err := Open(dir, arcOpts())
			require.NoError(t, err, "files are opened lazily")
			defer s.Close()

			st, err := s.Stats(ctx)
			require.NoError(t, err)
			require.Equal(t, 5, st.Archives)
			require.Equal(t, len(fx.want), st.Activities)

			// The damaged window.
			victimQ := func() *Query { return s.Query().Since(day(victim)).Until(day(victim + 1)) }
			_, err = walkIDs(ctx, victimQ())
			requireCorruptNaming(t, err, name, "walk of the damaged window")
			_, err = victimQ().Limit(MaxLimit).All(ctx)
			requireCorruptNaming(t, err, name, "page of the damaged window")
			_, err = walkIDs(ctx, s.Query())
			requireCorruptNaming(t, err, name, "walk of everything")
			n, err := victimQ().Count(ctx)
			if tc.badBlock >= 0 {
				require.NoError(t, err, "a count reads only the index")
				require.Equal(t, len(fx.byDay[victim]), n)
				bad := fx.blockIDs(tc.badBlock)
				for _, id := range []ID{bad[0], bad[len(bad)-1]} {
					_, err := s.Get(ctx, id)
					requireCorruptNaming(t, err, name, "Get %s in the damaged block", id)
				}
				good := fx.blockIDs((tc.badBlock + 1) % len(ft.Blocks))
				got, err := s.Get(ctx, good[0])
				require.NoError(t, err, "Get in an intact block")
				requireSame(t, fx.want[good[0]], got)
			} else {
				requireCorruptNaming(t, err, name, "count of the damaged window")
				for _, id := range []ID{fx.byDay[victim][0], fx.byDay[victim][len(fx.byDay[victim])-1]} {
					_, err := s.Get(ctx, id)
					requireCorruptNaming(t, err, name, "Get %s", id)
				}
			}

			// Every other window answers.
			got, err := walkIDs(ctx, s.Query().Since(day(victim+1)))
			require.NoError(t, err)
			require.Equal(t, fx.idsOfDays(3, 4, 5, 6), got)
			n, err = s.Query().Since(day(victim + 1)).Count(ctx)
			require.NoError(t, err)
			require.Equal(t, len(got), n)
			// Until the last nanosecond before the damaged window.
			older := s.Query().Since(day(0)).Until(day(victim).Add(-time.Nanosecond))
			got, err = walkIDs(ctx, older)
			require.NoError(t, err)
			require.Equal(t, fx.idsOfDays(0, 1), got)
			n, err = older.Count(ctx)
			require.NoError(t, err)
			require.Equal(t, len(got), n)
			recent, err := s.Recent(ctx, 10, 0)
			require.NoError(t, err)
			require.Len(t, recent, 10)
			for i, a := range recent {
				requireSame(t, fx.want[fx.byDay[6][i]], a)
			}
			page, err := s.Query().Types(mTypes[1]).Since(day(victim + 1)).Limit(20).All(ctx)
			require.NoError(t, err)
			require.Len(t, page.Activities, 20)
			for _, d := range []int{0, 1, 3, 4, 5, 6} {
				for _, id := range []ID{fx.byDay[d][0], fx.byDay[d][len(fx.byDay[d])-1]} {
					got, err := s.Get(ctx, id)
					require.NoError(t, err, "Get %s of day %d", id, d)
					requireSame(t, fx.want[id], got)
				}
			}

			// Verify lists the damaged file, and nothing else.
			err = s.Verify(ctx)
			var ve *VerifyError
			require.ErrorAs(t, err, &ve)
			require.ErrorIs(t, err, ErrCorrupt)
			require.NotEmpty(t, ve.Problems)
			for _, p := range ve.Problems {
				require.Contains(t, p, name, "Verify problem %q", p)
			}
			if tc.badBlock >= 0 {
				require.Contains(t, strings.Join(ve.Problems, "\n"), "block")
			}

			st2, err := s.Stats(ctx)
			require.NoError(t, err)
			require.Equal(t, st.Activities, st2.Activities)
			require.NoError(t, s.Close())

			// The damaged file is left for the operator: a reopen neither
			// deletes it nor fails.
			s, err = Open(dir, arcOpts())
			require.NoError(t, err)
			_, err = s.Query().Count(ctx)
			if tc.badBlock < 0 {
				requireCorruptNaming(t, err, name)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

// TestArchiveCorruptGetNeverPanics damages the victim's archive at every
// 97th byte (and every bit of the trailer) and calls Get on IDs of each of its
// blocks: each call returns the activity or an ErrCorrupt error.
func TestArchiveCorruptGetNeverPanics(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	var probes []ID
	for i := range fx.ft.Blocks {
		ids := fx.blockIDs(i)
		probes = append(probes, ids[0], ids[len(ids)/2])
	}
	step := int64(97)
	if testing.Short() {
		step = 499
	}
	var offs []int64
	for off := int64(0); off < fx.size; off += step {
		offs = append(offs, off)
	}
	for off := fx.size - arcfmt.TrailerSize; off < fx.size; off++ {
		offs = append(offs, off)
	}
	dir := fx.copy(t)
	path := fx.path(dir, victim)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, off := range offs {
		b := slices.Clone(orig)
		b[off] ^= 1 << (off % 8)
		require.NoError(t, os.WriteFile(path, b, 0o644))
		s, err := Open(dir, arcOpts())
		require.NoError(t, err)
		for _, id := range probes {
			got, err := s.Get(ctx, id)
			if err != nil {
				requireCorruptNaming(t, err, fx.names[victim], "offset %d, Get %s", off, id)
				continue
			}
			requireSame(t, fx.want[id], got)
		}
		require.Error(t, s.Verify(ctx), "offset %d", off)
		require.NoError(t, s.Close())
	}
}

// TestArchiveCorruptStrayFiles checks that files in the archive folder that are not
// archive-named are kept by Open and listed by Verify, while archive-named
// leftovers that no record refers to are removed.
func TestArchiveCorruptStrayFiles(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	dir := fx.copy(t)
	arcDir := filepath.Join(dir, "archive")
	stray := []string{"notes.txt", fx.names[victim] + ".bak", "README"}
	for _, n := range stray {
		require.NoError(t, os.WriteFile(filepath.Join(arcDir, n), []byte("operator notes\n"), 0o644))
	}
	leftover := archiveName(windowOf(9), 3)
	require.NoError(t, os.WriteFile(filepath.Join(arcDir, leftover), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(arcDir, archiveName(windowOf(8), 4)+".tmp"), []byte("tmp"), 0o644))

	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	names := listDir(t, arcDir)
	for _, n := range stray {
		require.Contains(t, names, n, "Open keeps files it does not own")
	}
	require.NotContains(t, names, leftover, "Open removes archive-named leftovers")
	require.Len(t, names, 5+len(stray))

	err = s.Verify(ctx)
	var ve *VerifyError
	require.ErrorAs(t, err, &ve)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Len(t, ve.Problems, len(stray), "%v", ve.Problems)
	for _, n := range stray {
		found := false
		for _, p := range ve.Problems {
			found = found || strings.Contains(p, n)
		}
		require.True(t, found, "Verify lists %s: %v", n, ve.Problems)
	}
	// The store itself is intact.
	got, err := walkIDs(ctx, s.Query())
	require.NoError(t, err)
	require.Equal(t, idsDesc(fx.want), got)
	require.NoError(t, s.Close())

	for _, n := range stray {
		require.NoError(t, os.Remove(filepath.Join(arcDir, n)))
	}
	s, err = Open(dir, arcOpts())
	require.NoError(t, err)
	require.NoError(t, s.Verify(ctx))
}

// TestCompactWithCorruptArchive sends late arrivals into the window of a
// damaged archive and into other cold windows: Compact cannot merge the
// former and says why, naming the file, but archives the others; it leaves
// no temporary file, and the late arrivals stay readable. Once the file is
// restored, Compact merges them.
func TestCompactWithCorruptArchive(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	dir := fx.copy(t)
	path := fx.path(dir, victim)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	flipBit(t, path, fx.ft.Blocks[1].Off+3, 0x08)

	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	want := map[ID]Activity{}
	for id, a := range fx.want {
		want[id] = a
	}
	late := map[ID]Activity{}
	appendAll(t, s, late, variedActs([]int{victim + 2, victim, -1}, 5, 31))
	for id, a := range late {
		want[id] = a
	}
	err = s.Compact(ctx)
	requireCorruptNaming(t, err, fx.names[victim], "Compact merging into a damaged archive")
	for _, n := range listDir(t, filepath.Join(dir, "archive")) {
		require.False(t, strings.HasSuffix(n, ".tmp"), "Compact left %s", n)
	}
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, st.Archives, "day -1 archived")
	require.Equal(t, 3, st.Segments, "the damaged window's late arrivals stay hot, with days 5 and 6")
	require.Equal(t, len(want), st.Activities)
	for id, a := range late {
		got, err := s.Get(ctx, id)
		require.NoError(t, err)
		requireSame(t, a, got)
	}
	got, err := walkIDs(ctx, s.Query().Since(day(victim+1)))
	require.NoError(t, err)
	var newer []ID
	for _, id := range idsDesc(want) {
		if !id.Time().Before(day(victim + 1)) {
			newer = append(newer, id)
		}
	}
	require.Equal(t, newer, got, "the merged window and the hot ones")
	require.NoError(t, s.Close())

	require.NoError(t, os.WriteFile(path, orig, 0o644))
	s, err = Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Compact(ctx))
	checkStoreHolds(t, s, want)
}

// TestArchiveCorruptUntilWindowStart deletes the archive of one window and
// queries the range that ends exactly where that window starts. Until is
// exclusive, so no activity of the damaged window can match and the query
// should not need its file.
func TestArchiveCorruptUntilWindowStart(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	dir := fx.copy(t)
	require.NoError(t, os.Remove(fx.path(dir, victim)))
	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	q := s.Query().Since(day(0)).Until(day(victim))
	got, err := walkIDs(ctx, q)
	require.NoError(t, err, "Until(start of the damaged window) reads that window")
	require.Equal(t, fx.idsOfDays(0, 1), got)
	n, err := q.Count(ctx)
	require.NoError(t, err, "Count with Until(start of the damaged window) reads that window")
	require.Equal(t, len(got), n)
}

// TestArchiveCorruptForeignWidth replaces an archive by a well-formed archive of
// the same window number and size written with another segment width (as
// another store's would be): its activities lie outside the store's window,
// so it must be reported as corrupt, not served.
func TestArchiveCorruptForeignWidth(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	dir := fx.copy(t)
	w := windowOf(victim)
	width := int64(time.Hour)
	n := len(fx.byDay[victim])
	acts := make([]Activity, n)
	for i := range acts {
		// Newest first, inside [w*width, (w+1)*width).
		ns := w*width + int64(n-i)*int64(time.Second)
		acts[i] = Activity{ID: makeID(ns, uint64(1000+n-i)), Type: "foreign", Module: "m", Action: "a"}
	}
	writeTestArchive(t, fx.path(dir, victim), w, width, acts)

	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	err = s.Verify(ctx)
	assert.ErrorIs(t, err, ErrCorrupt, "Verify of a store whose archive holds another width's window")
	_, err = walkIDs(ctx, s.Query().Since(day(victim)).Until(day(victim+1)))
	assert.ErrorIs(t, err, ErrCorrupt, "query of the window")
	_, err = s.Get(ctx, fx.byDay[victim][0])
	assert.ErrorIs(t, err, ErrCorrupt, "Get of an activity of the window")
	// A full walk must fail too. Served as it is, the foreign archive's
	// activities (from 1972) come in the middle of the walk, which then
	// skips the older windows.
	all, err := walkIDs(ctx, s.Query())
	if err != nil {
		assert.ErrorIs(t, err, ErrCorrupt, "full walk")
	} else {
		for i := 1; i < len(all); i++ {
			if !assert.Equal(t, -1, all[i].Compare(all[i-1]), "walk goes from %s to %s", all[i-1].Time(), all[i].Time()) {
				break
			}
		}
		seen := map[ID]bool{}
		for _, id := range all {
			seen[id] = true
		}
		missing := 0
		for _, id := range fx.idsOfDays(0, 1) {
			if !seen[id] {
				missing++
			}
		}
		assert.Zero(t, missing, "activities of the windows older than the foreign archive missing from a full walk of %d", len(all))
	}
}

// TestArchiveCorruptDuplicateIndexValue replaces an archive by a well-formed one
// (checksums right) whose index lists one type value twice, each with its
// own ordinals. decodeIndex means to reject that ("value %q twice"); taken
// as it is, the second list replaces the first in the bitmaps, so counts and
// filters by that type miss activities while the records still carry it.
func TestArchiveCorruptDuplicateIndexValue(t *testing.T) {
	fx := newCorruptFixture(t)
	ctx := context.Background()
	dir := fx.copy(t)
	acts := make([]Activity, 0, len(fx.byDay[victim]))
	for _, id := range fx.byDay[victim] {
		acts = append(acts, fx.want[id])
	}
	var dup string
	writeTestArchiveWith(t, fx.path(dir, victim), windowOf(victim), int64(24*time.Hour), acts, 256<<10, func(aw *archiveWriter) {
		vals := aw.w.Values(int(fieldType))
		require.GreaterOrEqual(t, len(vals), 2)
		dup = vals[0]
		vals[1] = dup
	})

	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	err = s.Verify(ctx)
	assert.ErrorIs(t, err, ErrCorrupt, "Verify of an archive whose index lists %q twice", dup)
	q := s.Query().Since(day(victim)).Until(day(victim + 1)).Types(dup)
	n, err := q.Count(ctx)
	if assert.ErrorIs(t, err, ErrCorrupt, "count of the window") {
		return
	}
	got, err := walkIDs(ctx, s.Query().Since(day(victim)).Until(day(victim+1)))
	require.NoError(t, err)
	typed := 0
	for _, id := range got {
		a, err := s.Get(ctx, id)
		require.NoError(t, err)
		if a.Type == dup {
			typed++
		}
	}
	assert.Equal(t, typed, n, "Types(%q).Count against the window's records of that type", dup)
}

// writeTestArchive writes acts (newest first, IDs set) as the archive of
// window w with the given width to path, and returns the file's bytes.
func writeTestArchive(t testing.TB, path string, w, width int64, acts []Activity) []byte {
	return writeTestArchiveWith(t, path, w, width, acts, 256<<10, nil)
}

// writeTestArchiveWith is writeTestArchive with a change to the writer's
// state before it writes the index and footer.
func writeTestArchiveWith(t testing.TB, path string, w, width int64, acts []Activity, blockBytes int, change func(*archiveWriter)) []byte {
	return writeTestArchiveAs(t, false, path, w, width, acts, blockBytes, change)
}

// writeTestArchiveAs is writeTestArchiveWith, in format 2 if format2.
func writeTestArchiveAs(t testing.TB, format2 bool, path string, w, width int64, acts []Activity, blockBytes int, change func(*archiveWriter)) []byte {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	aw, err := newArchiveWriter(f, filepath.Base(path), w, width, len(acts), blockBytes, inlineIDs, format2)
	require.NoError(t, err)
	for i := range acts {
		require.NoError(t, aw.add(&acts[i]))
	}
	if change != nil {
		change(aw)
	}
	_, err = aw.finish()
	require.NoError(t, err)
	require.NoError(t, f.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// copyFixture returns a store of 7 days, 5 of them archived (blocks of 1000
// bytes, with the options set changes), of 400 activities each: 380 of two
// heavy users (180 and 200) and one each of 20 light users, with what it
// holds by ID. It checks that Compact left nothing in the staging folder.
func copyFixture(t *testing.T, set func(*Options)) (string, map[ID]Activity) {
	t.Helper()
	dir := t.TempDir()
	o := arcOpts()
	o.blockBytes = 1000
	if set != nil {
		set(o)
	}
	s, err := Open(dir, o)
	require.NoError(t, err)
	want := map[ID]Activity{}
	appendAll(t, s, want, copyActs())
	require.NoError(t, s.Compact(context.Background()))
	staged, err := os.ReadDir(s.stageDir())
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	require.Empty(t, staged, "Compact leaves no spill or staging file")
	require.NoError(t, s.Close())
	return dir, want
}

// copyActs returns 400 activities a day for 7 days: two heavy users, and
// 20 light ones with one activity a day each.
func copyActs() []Activity {
	acts := variedActs([]int{0, 1, 2, 3, 4, 5, 6}, 400, 0)
	for i := range acts {
		acts[i].UserID = []string{"heavy-a", "heavy-b"}[i%2]
		if i%20 == 0 {
			acts[i].UserID = fmt.Sprintf("light-%02d", i/20%20)
		}
	}
	return acts
}

// TestCompactSpillFails puts a file where the spill file of an archive's
// copies would go: Compact fails naming it and archives nothing, every
// activity still answers, and once the way is clear Compact archives every
// cold day.
func TestCompactSpillFails(t *testing.T) {
	ctx := context.Background()
	o := arcOpts()
	o.blockBytes, o.copyMem = 1000, 256
	s, err := Open(t.TempDir(), o)
	require.NoError(t, err)
	defer s.Close()
	want := map[ID]Activity{}
	appendAll(t, s, want, copyActs())
	require.NoError(t, os.WriteFile(s.stageDir(), nil, 0o644))

	err = s.Compact(ctx)
	require.ErrorContains(t, err, "cannot open the spill file")
	require.ErrorContains(t, err, s.stageDir())
	require.Empty(t, archiveNames(s))
	checkStoreHolds(t, s, want)

	require.NoError(t, os.Remove(s.stageDir()))
	require.NoError(t, s.Compact(ctx))
	require.Len(t, archiveNames(s), 5, "the five cold days")
	checkStoreHolds(t, s, want)
	require.NoError(t, s.Verify(ctx))
}

// TestVerifyCopyRowMismatch replaces an archive by a well-formed one whose
// copy rows carry a type the index no longer gives their records: Verify
// reports the copy block as corrupt, naming the file.
func TestVerifyCopyRowMismatch(t *testing.T) {
	ctx := context.Background()
	dir, want := copyFixture(t, nil)
	var acts []Activity
	for _, id := range idsDesc(want) {
		if day(victim).Compare(id.Time()) <= 0 && id.Time().Before(day(victim+1)) {
			acts = append(acts, want[id])
		}
	}
	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	name := archiveNames(s)[windowOf(victim)]
	require.NoError(t, s.Close())
	path := filepath.Join(dir, "archive", name)
	st, err := os.Stat(path)
	require.NoError(t, err)
	// A new last letter for the type of a light user's activity, one that
	// keeps the file's size, which the archive's record holds.
	i := slices.IndexFunc(acts, func(a Activity) bool { return strings.HasPrefix(a.UserID, "light-") })
	require.GreaterOrEqual(t, i, 0)
	same := false
	for c := byte('a'); c <= 'z' && !same; c++ {
		renamed := false
		b := writeTestArchiveWith(t, path, windowOf(victim), int64(24*time.Hour), acts, 1000, func(aw *archiveWriter) {
			vals := aw.w.Values(int(fieldType))
			v := slices.Index(vals, acts[i].Type)
			old := vals[v]
			vals[v] = old[:len(old)-1] + string(c)
			renamed = vals[v] != old && slices.Index(vals, vals[v]) == v && !slices.Contains(vals[v+1:], vals[v])
		})
		same = renamed && int64(len(b)) == st.Size()
	}
	require.True(t, same, "no renamed type keeps the size")

	s, err = Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	err = s.Verify(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "is not the record it copies")
	require.ErrorContains(t, err, name)
}

// cachedBlocks returns the archive blocks and copy blocks in s's cache.
func cachedBlocks(s *Store) (blocks, copies int) {
	s.cache.RemoveIf(func(k cacheKey) bool {
		if k.a != nil && k.i >= 0 && k.kind == 0 {
			if k.cp {
				copies++
			} else {
				blocks++
			}
		}
		return false
	})
	return blocks, copies
}

// TestArchiveCopyBlocks checks that a light user's archived activities are
// read from the copy blocks, equal to what was appended, and that a whole
// day and a heavy user's activities are read from the blocks. In format 3 a
// light user's IDs and records all come from its copy block; in format 2 an
// archive whose block holding them is in the cache already reads that.
//
// The spill case holds at most 256 bytes of copies in memory while it
// writes an archive, less than a day's light users need: the rest go
// through a spill file, and every light user still gets its copies.
func TestArchiveCopyBlocks(t *testing.T) {
	for _, c := range []struct {
		name    string
		format2 bool
		copyMem int
	}{{"format3", false, 0}, {"format2", true, 0}, {"spill", false, 256}} {
		t.Run(c.name, func(t *testing.T) {
			testArchiveCopyBlocks(t, c.format2, func(o *Options) { o.format2, o.copyMem = c.format2, c.copyMem })
		})
	}
}

func testArchiveCopyBlocks(t *testing.T, format2 bool, set func(*Options)) {
	ctx := context.Background()
	dir, want := copyFixture(t, set)
	o := arcOpts()
	o.CacheBytes = 64 << 20 // keeps what the queries read, to count it
	s, err := Open(dir, o)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Verify(ctx))
	s.cache.RemoveIf(func(cacheKey) bool { return true })
	page, err := s.Query().Since(day(1)).Until(day(2)).Limit(MaxLimit).All(ctx)
	require.NoError(t, err)
	require.Equal(t, 400, len(page.Activities))
	blocks, copies := cachedBlocks(s)
	require.Positive(t, blocks)
	require.Zero(t, copies, "a whole day reads its blocks only")

	page, err = s.Query().Users("light-03").All(ctx)
	require.NoError(t, err)
	require.Equal(t, 7, len(page.Activities), "one a day")
	for _, a := range page.Activities {
		requireSame(t, want[a.ID], a)
	}
	again, copies := cachedBlocks(s)
	require.Equal(t, blocks, again, "no block read for a light user")
	if format2 {
		require.Equal(t, 4, copies, "one copy block per archive but day 1's, whose block is cached")
	} else {
		require.Equal(t, 5, copies, "one copy block per archive")
	}

	page, err = s.Query().Users("heavy-b").Until(day(5)).Limit(30).All(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, len(page.Activities))
	for _, a := range page.Activities {
		requireSame(t, want[a.ID], a)
	}
	blocks, _ = cachedBlocks(s)
	require.Positive(t, blocks, "a heavy user reads the blocks")
}

// TestArchiveCopyBlockCorrupt damages a copy block: reads of the light
// users' activities it holds fail as corruption naming the file, Verify
// names it, and the heavy users, read from the blocks, still answer.
func TestArchiveCopyBlockCorrupt(t *testing.T) {
	ctx := context.Background()
	dir, _ := copyFixture(t, nil)
	s, err := Open(dir, arcOpts())
	require.NoError(t, err)
	name := archiveNames(s)[windowOf(victim)]
	require.NoError(t, s.Close())
	path := filepath.Join(dir, "archive", name)
	f, err := os.Open(path)
	require.NoError(t, err)
	st, err := f.Stat()
	require.NoError(t, err)
	ft, err := arcfmt.ReadFooter(f, st.Size())
	f.Close()
	require.NoError(t, err)
	require.NotEmpty(t, ft.Copies)
	flipBit(t, path, ft.Copies[0].Off+int64(ft.Copies[0].CLen)/2, 0x08)

	s, err = Open(dir, arcOpts())
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Query().Users("light-03").All(ctx)
	requireCorruptNaming(t, err, name, "a light user's page")
	err = s.Verify(ctx)
	requireCorruptNaming(t, err, name, "Verify")
	require.Contains(t, err.Error(), "copy block 0")
	page, err := s.Query().Users("heavy-a").Since(day(victim)).Until(day(victim + 1)).Limit(MaxLimit).All(ctx)
	require.NoError(t, err)
	require.Equal(t, 180, len(page.Activities))
}
