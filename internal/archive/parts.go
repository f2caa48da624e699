package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/activitystore/activitystore/internal/codec"
)

// Format 3 keeps the index in parts, each its own section, so that a query
// reads only what it needs: the head, one field's directory, the ordinal
// lists of the values it filters on and the chunks that hold its matches.
// Every part is compressed like a block; counts and numbers are uvarints.
//
//	value groups: the ordinal list of every value of every field, field by
//	              field in FieldNames order, each field's values in
//	              ascending order; a list is its ordinals ascending as gaps
//	              (the first, then each minus the one before minus 1); a
//	              group closes once it holds groupBytes
//	chunks:       per Chunk ordinals (the last chunk may hold fewer): their
//	              IDs ascending (the first as unix nanoseconds and sequence
//	              number, then the differences: nanoseconds, and the
//	              sequence number zigzag-encoded), then per field the value
//	              number of each (its position in the field's directory),
//	              then per ordinal 1 + the position of its record's copy in
//	              the copy blocks, or 0 for none
//	directory:    per field: the number of values k, the k values ascending
//	              (length-prefixed), their ordinal counts, and where each
//	              one's list is: the group, the offset in the group and the
//	              length
//	head:         the first ID of every chunk (the first whole, then
//	              differences, as in a chunk), the last ID whole, and per
//	              field either 0, or (when it has at most CountedValues
//	              values) their number followed by each value and its count
//
// The file holds the blocks, the copy blocks, the value groups, the chunks,
// the five directories and the head, in that order, then the footer.

// ChunkOrdinals is the number of ordinals per chunk the writer uses.
const ChunkOrdinals = 128

// Bounds of the chunk size a reader accepts.
const (
	minChunk = 16
	maxChunk = 1 << 16
)

// CountedValues is the most values a field may have for the head to keep
// the count of each.
const CountedValues = 256

// groupBytes closes a value group: small, so that reading one sparse value
// decompresses little.
const groupBytes = 16 << 10

// IDParts is an activity ID as the index stores it.
type IDParts struct {
	NS  int64
	Seq uint64
}

// ValueCount is one value of a field with its number of activities.
type ValueCount struct {
	Value string
	Count int
}

// Head is the head part of a format 3 file.
type Head struct {
	Firsts []IDParts // the first ID of each chunk
	Last   IDParts   // the newest ID
	// Counts[f] lists the values of field f with their counts, when it has
	// at most CountedValues of them; nil otherwise.
	Counts [NumFields][]ValueCount
}

// Dir is the directory of one field of a format 3 file.
type Dir struct {
	Values []string // ascending; a value's position is its value number
	Counts []uint32 // activities per value
	// CopyAt, of the user field, is per value 1 + the position of its
	// newest copy in the copy blocks, or 0 for none; its copies are all its
	// records, newest first, in one copy block.
	CopyAt []uint64
	group  []uint32
	off    []uint32
	length []uint32
}

// Chunk is one chunk of a format 3 file.
type Chunk struct {
	IDs    []IDParts           // ascending
	Labels [NumFields][]uint32 // value number of each ordinal, per field
	Copies []uint32            // 1 + the position of each record's copy, or 0
}

// ChunkLen returns the number of ordinals of chunk c.
func (ft *Footer) ChunkLen(c int) int { return min(ft.Chunk, ft.N-c*ft.Chunk) }

// readPart reads, checks and decompresses one part of the index.
func readPart(f io.ReaderAt, s Section, what string) ([]byte, error) {
	_, _, dec := zstdCodecs()
	return readSection(f, s, dec, what)
}

// appendIDs appends ids as a chunk or the head stores them.
func appendIDs(dst []byte, ids []IDParts) []byte {
	for i, id := range ids {
		if i == 0 {
			dst = binary.AppendUvarint(dst, uint64(id.NS))
			dst = binary.AppendUvarint(dst, id.Seq)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(id.NS-ids[i-1].NS))
		dst = binary.AppendUvarint(dst, zigzag(int64(id.Seq-ids[i-1].Seq)))
	}
	return dst
}

// decodeIDs decodes k IDs stored by appendIDs, checking only that they
// are not negative; whether they ascend is for the caller to check.
func decodeIDs(d *codec.Decoder, k int) ([]IDParts, bool) {
	if uint64(k) > uint64(len(d.B)) {
		return nil, false
	}
	ids := make([]IDParts, k)
	var ns, seq uint64
	for i := range ids {
		if i == 0 {
			ns, seq = d.Uvarint(), d.Uvarint()
		} else {
			ns += d.Uvarint()
			seq += uint64(unzigzag(d.Uvarint()))
		}
		if d.Err != nil || ns > 1<<63-1 {
			return nil, false
		}
		ids[i] = IDParts{int64(ns), seq}
	}
	return ids, true
}

// ReadHead reads the head of a format 3 file.
func (ft *Footer) ReadHead(f io.ReaderAt) (*Head, error) {
	raw, err := readPart(f, ft.Head, "head")
	if err != nil {
		return nil, err
	}
	d := codec.Decoder{B: raw}
	h := &Head{}
	var ok bool
	if h.Firsts, ok = decodeIDs(&d, len(ft.Chunks)); !ok {
		return nil, corruptf("head: malformed chunk IDs")
	}
	last, ok := decodeIDs(&d, 1)
	if !ok {
		return nil, corruptf("head: malformed last ID")
	}
	h.Last = last[0]
	for fi := range h.Counts {
		k := d.Uvarint()
		if d.Err != nil || k > CountedValues {
			return nil, corruptf("head: field %s: malformed counts", FieldNames[fi])
		}
		total := 0
		for i := range k {
			v, c := d.Bytes(), d.Uvarint()
			total += int(min(c, 1<<32))
			if d.Err != nil || c == 0 || total > ft.N || (i > 0 && string(v) <= h.Counts[fi][i-1].Value) {
				return nil, corruptf("head: field %s: malformed counts", FieldNames[fi])
			}
			h.Counts[fi] = append(h.Counts[fi], ValueCount{string(v), int(c)})
		}
		if k > 0 && total != ft.N {
			return nil, corruptf("head: field %s: counts add up to %d of %d activities", FieldNames[fi], total, ft.N)
		}
	}
	if len(d.B) != 0 {
		return nil, corruptf("head: %d trailing bytes", len(d.B))
	}
	return h, nil
}

// ReadDir reads the directory of field fi of a format 3 file.
func (ft *Footer) ReadDir(f io.ReaderAt, fi int) (*Dir, error) {
	what := "directory of " + FieldNames[fi]
	raw, err := readPart(f, ft.Dirs[fi], what)
	if err != nil {
		return nil, err
	}
	d := codec.Decoder{B: raw}
	k := d.Uvarint()
	if d.Err != nil || k == 0 || k > uint64(ft.N) || k > uint64(len(d.B)) {
		return nil, corruptf("%s: bad value count", what)
	}
	// The values share one string.
	start := len(raw) - len(d.B)
	type span struct{ from, to int }
	spans := make([]span, k)
	for i := range spans {
		v := d.Bytes()
		if d.Err != nil {
			return nil, corruptf("%s: malformed values", what)
		}
		end := len(raw) - len(d.B)
		spans[i] = span{end - len(v), end}
	}
	all := string(raw[start : len(raw)-len(d.B)])
	dir := &Dir{Values: make([]string, k), Counts: make([]uint32, k), group: make([]uint32, k), off: make([]uint32, k), length: make([]uint32, k)}
	for i, sp := range spans {
		dir.Values[i] = all[sp.from-start : sp.to-start]
		if i > 0 && dir.Values[i] <= dir.Values[i-1] {
			return nil, corruptf("%s: values out of order", what)
		}
	}
	total := uint64(0)
	for i := range dir.Counts {
		c := d.Uvarint()
		total += c
		if d.Err != nil || c == 0 || total > uint64(ft.N) {
			return nil, corruptf("%s: bad ordinal counts", what)
		}
		dir.Counts[i] = uint32(c)
	}
	if total != uint64(ft.N) {
		return nil, corruptf("%s: %d ordinals for %d activities", what, total, ft.N)
	}
	for _, col := range [][]uint32{dir.group, dir.off, dir.length} {
		for i := range col {
			x := d.Uvarint()
			if d.Err != nil || x >= 1<<32 {
				return nil, corruptf("%s: malformed list locations", what)
			}
			col[i] = uint32(x)
		}
	}
	if fi == UserField {
		dir.CopyAt = make([]uint64, k)
		for i := range dir.CopyAt {
			at := d.Uvarint()
			if d.Err != nil || at > uint64(ft.CopyCount()) {
				return nil, corruptf("%s: malformed copy positions", what)
			}
			if at > 0 {
				c := ft.CopyBlockAt(int(at - 1))
				if s := ft.Copies[c]; int(at-1)+int(dir.Counts[i]) > s.First+s.Count {
					return nil, corruptf("%s: copies of %q outside their copy block", what, dir.Values[i])
				}
			}
			dir.CopyAt[i] = at
		}
	}
	for i := range dir.group {
		if int(dir.group[i]) >= len(ft.Groups) || uint64(dir.off[i])+uint64(dir.length[i]) > ft.Groups[dir.group[i]].RLen || dir.length[i] < dir.Counts[i] {
			return nil, corruptf("%s: list of %q outside its group", what, dir.Values[i])
		}
	}
	if len(d.B) != 0 {
		return nil, corruptf("%s: %d trailing bytes", what, len(d.B))
	}
	return dir, nil
}

// Find returns the value number of v, and false when the field has no
// such value.
func (d *Dir) Find(v string) (int, bool) { return slices.BinarySearch(d.Values, v) }

// Group returns the value group holding the ordinal list of value i.
func (d *Dir) Group(i int) int { return int(d.group[i]) }

// Size returns the approximate bytes d holds, for caches.
func (d *Dir) Size() int64 {
	n := int64(len(d.Values))*(16+4*4) + 8*int64(len(d.CopyAt))
	for _, v := range d.Values {
		n += int64(len(v))
	}
	return n + 128
}

// ReadGroup reads value group g of a format 3 file.
func (ft *Footer) ReadGroup(f io.ReaderAt, g int) ([]byte, error) {
	if g < 0 || g >= len(ft.Groups) {
		return nil, corruptf("no value group %d", g)
	}
	return readPart(f, ft.Groups[g], "value group "+strconv.Itoa(g))
}

// Ordinals appends to dst the ordinals of value i, ascending, from its
// group's bytes (ReadGroup of Group(i)); n is the file's activity count.
func (d *Dir) Ordinals(i int, group []byte, n int, dst []uint32) ([]uint32, error) {
	if uint64(d.off[i])+uint64(d.length[i]) > uint64(len(group)) {
		return nil, corruptf("ordinal list of %q outside its group", d.Values[i])
	}
	dec := codec.Decoder{B: group[d.off[i] : d.off[i]+d.length[i]]}
	next := uint64(0)
	for range d.Counts[i] {
		o := next + dec.Uvarint()
		if dec.Err != nil || o >= uint64(n) {
			return nil, corruptf("malformed ordinal list of %q", d.Values[i])
		}
		dst = append(dst, uint32(o))
		next = o + 1
	}
	if len(dec.B) != 0 {
		return nil, corruptf("ordinal list of %q: %d trailing bytes", d.Values[i], len(dec.B))
	}
	return dst, nil
}

// ReadChunk reads chunk c of a format 3 file. It checks that its value
// numbers are below limits[f] (the sizes of the directories; 0 skips the
// check) and its copy positions within the copy blocks.
func (ft *Footer) ReadChunk(f io.ReaderAt, c int, limits [NumFields]int) (*Chunk, error) {
	if c < 0 || c >= len(ft.Chunks) {
		return nil, corruptf("no chunk %d", c)
	}
	what := "chunk " + strconv.Itoa(c)
	raw, err := readPart(f, ft.Chunks[c], what)
	if err != nil {
		return nil, err
	}
	m := ft.ChunkLen(c)
	d := codec.Decoder{B: raw}
	ch := &Chunk{}
	var ok bool
	if ch.IDs, ok = decodeIDs(&d, m); !ok {
		return nil, corruptf("%s: malformed IDs", what)
	}
	col := func(limit uint64) ([]uint32, bool) {
		if uint64(m) > uint64(len(d.B)) {
			return nil, false
		}
		out := make([]uint32, m)
		for i := range out {
			x := d.Uvarint()
			if d.Err != nil || x > limit {
				return nil, false
			}
			out[i] = uint32(x)
		}
		return out, true
	}
	for fi := range ch.Labels {
		limit := uint64(1<<32 - 1)
		if limits[fi] > 0 {
			limit = uint64(limits[fi]) - 1
		}
		if ch.Labels[fi], ok = col(limit); !ok {
			return nil, corruptf("%s: malformed value numbers of %s", what, FieldNames[fi])
		}
	}
	if ch.Copies, ok = col(uint64(ft.CopyCount())); !ok {
		return nil, corruptf("%s: malformed copy positions", what)
	}
	if len(d.B) != 0 {
		return nil, corruptf("%s: %d trailing bytes", what, len(d.B))
	}
	return ch, nil
}

// Size returns the approximate bytes c holds, for caches.
func (c *Chunk) Size() int64 { return int64(len(c.IDs))*(16+4*(NumFields+1)) + 256 }

// writeParts writes the index of a format 3 file: the value groups, the
// chunks, the directories and the head. copyAt gives, per user value
// number, 1 + the position of its newest copy, or 0.
func (w *Writer) writeParts(copyAt []uint64) error {
	n := w.n
	// Each field's values ascending: rank[f][v] is the directory position
	// of the writer's value number v.
	var rank, order [NumFields][]uint32
	for f := range NumFields {
		order[f] = make([]uint32, len(w.vals[f]))
		for i := range order[f] {
			order[f][i] = uint32(i)
		}
		slices.SortFunc(order[f], func(a, b uint32) int { return strings.Compare(w.vals[f][a], w.vals[f][b]) })
		rank[f] = make([]uint32, len(order[f]))
		for r, v := range order[f] {
			rank[f][v] = uint32(r)
		}
	}
	// The value groups, and where each list went.
	type loc struct{ g, off, len uint32 }
	var locs [NumFields][]loc
	grp := w.raw[:0]
	flush := func() error {
		if len(grp) == 0 {
			return nil
		}
		s, err := w.writeSection(grp, nil)
		if err != nil {
			return err
		}
		w.groups = append(w.groups, s)
		grp = grp[:0]
		return nil
	}
	for f := range NumFields {
		locs[f] = make([]loc, len(order[f]))
		for r, v := range order[f] {
			start := len(grp)
			os := w.ords[f][v] // descending
			next := uint32(0)
			for i := len(os) - 1; i >= 0; i-- {
				grp = binary.AppendUvarint(grp, uint64(os[i]-next))
				next = os[i] + 1
			}
			locs[f][r] = loc{uint32(len(w.groups)), uint32(start), uint32(len(grp) - start)}
			if len(grp) >= groupBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// Per ordinal: its value numbers, and where its copy is.
	var labels [NumFields][]uint32
	for f := range NumFields {
		labels[f] = make([]uint32, n)
		for v, os := range w.ords[f] {
			for _, o := range os {
				labels[f][o] = rank[f][v]
			}
		}
	}
	copies := make([]uint32, n)
	for v, at := range copyAt {
		if at > 0 {
			for k, o := range w.ords[UserField][v] { // newest first
				copies[o] = uint32(at) + uint32(k)
			}
		}
	}
	// The chunks.
	var firsts []IDParts
	ids := make([]IDParts, 0, ChunkOrdinals)
	for lo := 0; lo < n; lo += ChunkOrdinals {
		hi := min(lo+ChunkOrdinals, n)
		ids = ids[:0]
		for o := lo; o < hi; o++ {
			id := w.ids[n-1-o]
			ids = append(ids, IDParts{id.ns, id.seq})
		}
		firsts = append(firsts, ids[0])
		raw := appendIDs(w.raw[:0], ids)
		cuts := []int{len(raw)}
		for f := range NumFields {
			for _, v := range labels[f][lo:hi] {
				raw = binary.AppendUvarint(raw, uint64(v))
			}
			cuts = append(cuts, len(raw))
		}
		for _, p := range copies[lo:hi] {
			raw = binary.AppendUvarint(raw, uint64(p))
		}
		w.raw = raw
		s, err := w.writeSection(raw, cuts)
		if err != nil {
			return err
		}
		w.chunks = append(w.chunks, s)
	}
	// The directories.
	for f := range NumFields {
		raw := binary.AppendUvarint(w.raw[:0], uint64(len(order[f])))
		for _, v := range order[f] {
			raw = codec.AppendString(raw, w.vals[f][v])
		}
		cuts := []int{len(raw)}
		for _, v := range order[f] {
			raw = binary.AppendUvarint(raw, uint64(len(w.ords[f][v])))
		}
		for _, part := range []func(loc) uint32{func(l loc) uint32 { return l.g }, func(l loc) uint32 { return l.off }, func(l loc) uint32 { return l.len }} {
			cuts = append(cuts, len(raw))
			for _, l := range locs[f] {
				raw = binary.AppendUvarint(raw, uint64(part(l)))
			}
		}
		if f == UserField {
			cuts = append(cuts, len(raw))
			for _, v := range order[f] {
				raw = binary.AppendUvarint(raw, copyAt[v])
			}
		}
		w.raw = raw
		s, err := w.writeSection(raw, cuts)
		if err != nil {
			return err
		}
		w.dirs[f] = s
	}
	// The head.
	raw := appendIDs(w.raw[:0], firsts)
	last := w.ids[0]
	raw = appendIDs(raw, []IDParts{{last.ns, last.seq}})
	for f := range NumFields {
		if len(order[f]) > CountedValues {
			raw = append(raw, 0)
			continue
		}
		raw = binary.AppendUvarint(raw, uint64(len(order[f])))
		for _, v := range order[f] {
			raw = codec.AppendString(raw, w.vals[f][v])
			raw = binary.AppendUvarint(raw, uint64(len(w.ords[f][v])))
		}
	}
	w.raw = raw
	var err error
	w.head, err = w.writeSection(raw, nil)
	return err
}

// LoadIndex reads the whole index of f, of any format, and checks that its
// parts agree: each ordinal has exactly one value per field, every chunk
// starts at the ID the head gives, the copies of each user are its records
// newest first, apart from every other user's. It passes each ID to id, in
// ordinal order (ascending), as DecodeIndex does.
func (ft *Footer) LoadIndex(f io.ReaderAt, id func(o int, ns int64, seq uint64) error) (*Index, error) {
	if ft.Format < 3 {
		raw, err := ft.ReadIndex(f)
		if err != nil {
			return nil, err
		}
		return DecodeIndex(raw, ft, id)
	}
	h, err := ft.ReadHead(f)
	if err != nil {
		return nil, err
	}
	ix := &Index{}
	var dirs [NumFields]*Dir
	var limits [NumFields]int
	for fi := range NumFields {
		if dirs[fi], err = ft.ReadDir(f, fi); err != nil {
			return nil, err
		}
		limits[fi] = len(dirs[fi].Values)
		ix.Values[fi] = dirs[fi].Values
		ix.Labels[fi] = make([]uint32, ft.N)
		if h.Counts[fi] != nil {
			for i, vc := range h.Counts[fi] {
				if i >= len(dirs[fi].Values) || vc.Value != dirs[fi].Values[i] || uint32(vc.Count) != dirs[fi].Counts[i] {
					return nil, corruptf("head: counts of %s disagree with its directory", FieldNames[fi])
				}
			}
			if len(h.Counts[fi]) != len(dirs[fi].Values) {
				return nil, corruptf("head: counts of %s disagree with its directory", FieldNames[fi])
			}
		}
	}
	copyPos := make([]uint32, ft.N)
	for c := range ft.Chunks {
		ch, err := ft.ReadChunk(f, c, limits)
		if err != nil {
			return nil, err
		}
		if ch.IDs[0] != h.Firsts[c] {
			return nil, corruptf("chunk %d starts at another ID than the head gives", c)
		}
		base := c * ft.Chunk
		for i, x := range ch.IDs {
			if err := id(base+i, x.NS, x.Seq); err != nil {
				return nil, err
			}
		}
		if c == len(ft.Chunks)-1 && ch.IDs[len(ch.IDs)-1] != h.Last {
			return nil, corruptf("the last chunk ends at another ID than the head gives")
		}
		for fi := range NumFields {
			copy(ix.Labels[fi][base:], ch.Labels[fi])
		}
		copy(copyPos[base:], ch.Copies)
	}
	// Each value's list holds exactly the ordinals labelled with it: the
	// counts add up to N and the lists ascend, so each ordinal has one value.
	var group []byte
	g := -1
	var ords []uint32
	for fi, d := range dirs {
		ix.Bitmaps[fi] = make([]*roaring.Bitmap, len(d.Values))
		for i := range d.Values {
			if d.Group(i) != g {
				g = d.Group(i)
				if group, err = ft.ReadGroup(f, g); err != nil {
					return nil, err
				}
			}
			if ords, err = d.Ordinals(i, group, ft.N, ords[:0]); err != nil {
				return nil, err
			}
			for _, o := range ords {
				if ix.Labels[fi][o] != uint32(i) {
					return nil, corruptf("field %s: ordinal %d is in the list of %q but labelled otherwise", FieldNames[fi], o, d.Values[i])
				}
			}
			bm := roaring.New()
			bm.AddMany(ords)
			ix.Bitmaps[fi][i] = bm
		}
	}
	// A user's copies are consecutive, newest first; no two users share one.
	ix.CopyAt = make([]uint64, len(ix.Values[UserField]))
	used := roaring.New()
	for v, bm := range ix.Bitmaps[UserField] {
		at := copyPos[bm.Maximum()]
		if uint64(at) != dirs[UserField].CopyAt[v] {
			return nil, corruptf("copies of user %q: the directory and the chunks disagree", ix.Values[UserField][v])
		}
		ix.CopyAt[v] = uint64(at)
		k := uint32(0)
		for it := bm.ReverseIterator(); it.HasNext(); k++ {
			o := it.Next()
			want := uint32(0)
			if at > 0 {
				want = at + k
				if !used.CheckedAdd(want) {
					return nil, corruptf("copies of two users overlap")
				}
			}
			if copyPos[o] != want {
				return nil, corruptf("copies of user %q are not its records newest first", ix.Values[UserField][v])
			}
		}
	}
	return ix, nil
}

// copyRows gathers what a copy block of format 3 keeps beside each record:
// its ordinal, its ID and its labels but the user's, so that a light user's
// page reads its copy block and nothing else.
//
// Raw form, after the block's own: the ordinals (uvarints), the IDs (per
// record zigzag(ns − previous ns), zigzag(sequence − previous sequence),
// from 0), then a string column per label field but user_id.
type copyRows struct {
	ords []uint32
	ids  []IDParts
	labs [NumFields]strCol
}

func (c *copyRows) add(buf []byte, r cpRef) {
	c.ords = append(c.ords, r.o)
	c.ids = append(c.ids, IDParts{r.ns, r.seq})
	p := r.off + uint64(r.api) + uint64(r.det)
	for f := range NumFields {
		if f != UserField {
			l := uint64(r.lab[f])
			c.labs[f].add(buf[p : p+l])
			p += l
		}
	}
}

func (c *copyRows) reset() {
	c.ords, c.ids = c.ords[:0], c.ids[:0]
	for f := range c.labs {
		c.labs[f].reset()
	}
}

func zigzag(x int64) uint64 { return uint64(x<<1 ^ x>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (c *copyRows) encode(dst []byte, distinct map[string]uint32, cuts *[]int) []byte {
	*cuts = append(*cuts, len(dst))
	for _, o := range c.ords {
		dst = binary.AppendUvarint(dst, uint64(o))
	}
	*cuts = append(*cuts, len(dst))
	var prev IDParts
	for _, id := range c.ids {
		dst = binary.AppendUvarint(dst, zigzag(id.NS-prev.NS))
		dst = binary.AppendUvarint(dst, zigzag(int64(id.Seq-prev.Seq)))
		prev = id
	}
	for f := range c.labs {
		if f != UserField {
			*cuts = append(*cuts, len(dst))
			dst = c.labs[f].encode(dst, distinct, cuts)
		}
	}
	return dst
}

// CopyRows are what a copy block of format 3 keeps beside its records.
type CopyRows struct {
	Ords []uint32  // each record's ordinal
	IDs  []IDParts // each record's ID
	labs [NumFields]column
}

// Label returns field f of record j; the user's is not kept ("").
func (r *CopyRows) Label(j, f int) []byte {
	if f == UserField {
		return nil
	}
	return r.labs[f].at(j)
}

// maxLabel is the longest label a copy row may hold.
const maxLabel = 1 << 16

func decodeCopyRows(d *codec.Decoder, count int) (*CopyRows, error) {
	if count > len(d.B) {
		return nil, errors.New("copy rows: truncated")
	}
	r := &CopyRows{Ords: make([]uint32, count), IDs: make([]IDParts, count)}
	for j := range r.Ords {
		o := d.Uvarint()
		if d.Err != nil || o >= 1<<32 {
			return nil, errors.New("copy rows: bad ordinal")
		}
		r.Ords[j] = uint32(o)
	}
	var prev IDParts
	for j := range r.IDs {
		ns := prev.NS + unzigzag(d.Uvarint())
		seq := prev.Seq + uint64(unzigzag(d.Uvarint()))
		if d.Err != nil || ns < 0 {
			return nil, errors.New("copy rows: bad ID")
		}
		prev = IDParts{ns, seq}
		r.IDs[j] = prev
	}
	for f := range r.labs {
		if f == UserField {
			continue
		}
		var err error
		if r.labs[f], err = decodeColumn(d, count, maxLabel); err != nil {
			return nil, fmt.Errorf("copy rows: %s: %w", FieldNames[f], err)
		}
	}
	return r, nil
}
