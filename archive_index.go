package activitystore

import (
	"fmt"
	"io"

	"github.com/RoaringBitmap/roaring/v2"
	arcfmt "github.com/activitystore/activitystore/internal/archive"
)

// The archive format checks records against its own copies of the store's
// limits; these fail to compile if they differ.
var (
	_ = [1]struct{}{}[MaxAPICallBytes-arcfmt.MaxAPICall]
	_ = [1]struct{}{}[MaxDetailsBytes-arcfmt.MaxDetails]
	_ = [1]struct{}{}[numFields-arcfmt.NumFields]
	_ = [1]struct{}{}[fieldUser-arcfmt.UserField]
)

// arcIndex is the loaded index section of an archive: a sealed segment
// keyed by the store's value numbers, and the archive's own value tables
// that its blocks refer to.
type arcIndex struct {
	seg    *segment
	vals   [numFields][]string // archive value number -> value
	labels [numFields][]uint32 // ordinal -> archive value number
	size   int64               // approximate bytes held
	// copyAt and users, by archive user value number: 1 + the position of
	// the user's newest copy in the copy blocks (0: none), and the user's
	// ordinals.
	copyAt []uint64
	users  []*roaring.Bitmap
}

// decodeIndex parses the index section raw of archive file name (format 1
// or 2), with footer ft, as loadIndex does.
func decodeIndex(raw []byte, ft *arcfmt.Footer, dicts *[numFields]dict, name string) (*arcIndex, error) {
	return buildIndex(ft, dicts, name, int64(len(raw)), func(id func(int, int64, uint64) error) (*arcfmt.Index, error) {
		return arcfmt.DecodeIndex(raw, ft, id)
	})
}

// loadIndex reads the whole index of archive file name from f, of any
// format, checking that its IDs are valid, ascending and inside the
// window. Only a sound index adds its values to dicts.
func loadIndex(f io.ReaderAt, ft *arcfmt.Footer, dicts *[numFields]dict, name string) (*arcIndex, error) {
	raw := int64(ft.Index.RLen)
	for _, ss := range [][]arcfmt.Section{ft.Groups, ft.Dirs[:], {ft.Head}} {
		for _, s := range ss {
			raw += int64(s.RLen)
		}
	}
	return buildIndex(ft, dicts, name, raw, func(id func(int, int64, uint64) error) (*arcfmt.Index, error) {
		return ft.LoadIndex(f, id)
	})
}

// buildIndex makes the in-memory index of archive file name from what
// decode returns, raw bytes in its encoded form.
func buildIndex(ft *arcfmt.Footer, dicts *[numFields]dict, name string, raw int64, decode func(id func(int, int64, uint64) error) (*arcfmt.Index, error)) (*arcIndex, error) {
	n := ft.N
	lo := idFloor(ft.Window * ft.Width)
	hi := idFloor((ft.Window + 1) * ft.Width)
	if (ft.Window+1)*ft.Width < 0 {
		hi = maxID
	}
	var ids []ID
	addID := func(o int, ns int64, seq uint64) error {
		if ids == nil {
			ids = make([]ID, 0, n) // n fits raw: DecodeIndex checked
		}
		if seq > maxSeq {
			return archiveCorrupt(name, "index: ID column entry %d is malformed", o)
		}
		id := makeID(ns, seq)
		if !id.valid() || id.Compare(lo) < 0 || id.Compare(hi) >= 0 || (o > 0 && id.Compare(ids[o-1]) <= 0) {
			return archiveCorrupt(name, "index: ID column entry %d is out of order or outside window %d", o, ft.Window)
		}
		ids = append(ids, id)
		return nil
	}
	aix, err := decode(addID)
	if err != nil {
		return nil, archiveErr(name, err)
	}
	seg := newSegment(ft.Window)
	seg.ids = ids
	ix := &arcIndex{seg: seg, vals: aix.Values, labels: aix.Labels, size: int64(16*n) + 4*int64(numFields)*int64(n) + raw,
		copyAt: aix.CopyAt, users: aix.Bitmaps[fieldUser]}
	for f := range numFields {
		for i, v := range ix.vals[f] {
			vn := dicts[f].intern(v)
			seg.bms[f][vn] = aix.Bitmaps[f][i]
			ix.vals[f][i] = dicts[f].value(vn)
		}
	}
	seg.sealed = true
	return ix, nil
}

// copyOf returns where the copy of ordinal o's record is in the copy blocks,
// and false when its user has no copies.
func (ix *arcIndex) copyOf(o int) (int, bool) {
	if ix.copyAt == nil {
		return 0, false
	}
	uv := ix.labels[fieldUser][o]
	at := ix.copyAt[uv]
	if at == 0 {
		return 0, false
	}
	bm := ix.users[uv]
	return int(at-1) + int(bm.GetCardinality()-bm.Rank(uint32(o))), true
}

// sameRow reports whether row j of a copy block's rows (format 3; nil
// before) is ordinal o: its ordinal, ID and labels but the user's.
func (ix *arcIndex) sameRow(rows *arcfmt.CopyRows, j, o int) bool {
	if rows == nil {
		return true
	}
	id := ix.seg.ids[o]
	if int(rows.Ords[j]) != o || rows.IDs[j] != (arcfmt.IDParts{NS: id.UnixNano(), Seq: id.seq()}) {
		return false
	}
	for f := range numFields {
		if f != fieldUser && string(rows.Label(j, int(f))) != ix.label(f, o) {
			return false
		}
	}
	return true
}

// label returns the value of field f of ordinal o.
func (ix *arcIndex) label(f field, o int) string { return ix.vals[f][ix.labels[f][o]] }

// fill sets a to the activity of ordinal o, with its APICall and Details
// from a block; a keeps apicall's and details' memory.
func (ix *arcIndex) fill(a *Activity, o int, apicall, details []byte) {
	var labels [numFields]string
	for f := range numFields {
		labels[f] = ix.label(f, o)
	}
	archivedActivity(a, ix.seg.ids[o], &labels, apicall, details)
}

// archivedActivity sets a to the activity id of an archive, with its labels
// in field order and its APICall and Details from a block; a keeps
// apicall's and details' memory.
func archivedActivity(a *Activity, id ID, labels *[numFields]string, apicall, details []byte) {
	*a = Activity{
		ID: id, Time: id.Time(),
		Type:     labels[fieldType],
		UserID:   labels[fieldUser],
		Module:   labels[fieldModule],
		Action:   labels[fieldAction],
		Resource: labels[fieldResource],
		APICall:  str(apicall),
	}
	if len(details) > 0 {
		a.Details = details
	}
}

// archiveWriter writes the activities of one window, newest first, to an
// archive file.
type archiveWriter struct {
	w      *arcfmt.Writer
	name   string
	window int64
	lo, hi ID
	prev   ID // the last ID added
	added  bool
}

// newArchiveWriter starts the archive of window holding n activities; a
// user with at most copies of them gets copies of their records in its copy
// blocks.
func newArchiveWriter(f arcfmt.File, name string, window, width int64, n, blockBytes, copies int, format2 bool) (*archiveWriter, error) {
	w, err := arcfmt.NewWriter(f, name, window, width, n, blockBytes)
	if err != nil {
		return nil, err
	}
	if format2 {
		w.WriteFormat2()
	}
	w.KeepCopies(copies)
	aw := &archiveWriter{w: w, name: name, window: window, lo: idFloor(window * width), hi: idFloor((window + 1) * width)}
	if (window+1)*width < 0 {
		aw.hi = maxID
	}
	return aw, nil
}

// add appends the next activity, whose ID must be below the previous one.
func (aw *archiveWriter) add(a *Activity) error {
	if a.ID.Compare(aw.lo) < 0 || a.ID.Compare(aw.hi) >= 0 || (aw.added && a.ID.Compare(aw.prev) >= 0) {
		return fmt.Errorf("archive %s: activity %s out of order or outside window %d", aw.name, a.ID, aw.window)
	}
	if err := aw.w.Add(a.ID.UnixNano(), a.ID.seq(), a.labels(), a.APICall, a.Details); err != nil {
		return err
	}
	aw.prev, aw.added = a.ID, true
	return nil
}

// finish writes the index and the footer, syncs the file and returns its
// size.
func (aw *archiveWriter) finish() (int64, error) {
	if err := aw.w.Finish(); err != nil {
		return 0, err
	}
	return aw.w.Size(), nil
}
