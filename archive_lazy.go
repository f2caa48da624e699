package activitystore

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
	"github.com/activitystore/activitystore/internal/record"
)

// An archive of format 3 keeps its index in parts (internal/archive,
// parts.go), and a query reads it as it reads a sealed segment in pebble:
// piece by piece, each piece through the store's cache. The window's
// descriptor, built from the archive's head on first use, stays with the
// archive; a query works on a view of it that carries its context, so that
// its reads of the archive stop with it.

// arcChunk is one decoded chunk of a format 3 archive.
type arcChunk struct {
	ids []ID
	ch  *arcfmt.Chunk
}

// key returns the segment whose pieces sl's are in the cache: the
// archive's own descriptor for a view of it, sl itself otherwise.
func (sl *sealedSeg) key() *sealedSeg {
	if sl.base != nil {
		return sl.base
	}
	return sl
}

// arcView returns a view bounded by ctx of the sealed form of archive a,
// or nil when a is of a format before 3, whose index loads whole.
func (s *Store) arcView(ctx context.Context, a *archive) (*sealedSeg, error) {
	a.mu.Lock()
	base, ft := a.sl, a.ft
	a.mu.Unlock()
	if ft == nil {
		// Not opened yet: the footer says the format.
		var err error
		if ft, err = a.footer(ctx); err != nil {
			return nil, err
		}
	}
	if ft.Format < 3 {
		return nil, nil
	}
	if base == nil {
		var err error
		if base, err = s.arcDescriptor(ctx, a); err != nil {
			return nil, err
		}
	}
	return &sealedSeg{window: base.window, n: base.n, chunk: base.chunk, firsts: base.firsts, last: base.last, counts: base.counts,
		arc: a, base: base, ctx: ctx}, nil
}

// arcDescriptor reads the head of format 3 archive a into the descriptor
// of its window, and keeps it with a.
func (s *Store) arcDescriptor(ctx context.Context, a *archive) (*sealedSeg, error) {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	a.mu.Lock()
	sl := a.sl
	a.mu.Unlock()
	if sl != nil {
		return sl, nil
	}
	var ft *arcfmt.Footer
	h, err := readArchive(ctx, a, func(f io.ReaderAt, aft *arcfmt.Footer) (*arcfmt.Head, error) {
		ft = aft
		return aft.ReadHead(f)
	})
	if err != nil {
		return nil, err
	}
	sl = &sealedSeg{window: a.window, n: ft.N, chunk: ft.Chunk, arc: a}
	lo, hi := idFloor(ft.Window*ft.Width), idFloor((ft.Window+1)*ft.Width)
	if (ft.Window+1)*ft.Width < 0 {
		hi = maxID
	}
	in := func(p arcfmt.IDParts) (ID, bool) {
		if p.Seq > maxSeq {
			return ID{}, false
		}
		id := makeID(p.NS, p.Seq)
		return id, id.valid() && id.Compare(lo) >= 0 && id.Compare(hi) < 0
	}
	sl.firsts = make([]ID, len(h.Firsts))
	for i, p := range h.Firsts {
		id, ok := in(p)
		if !ok || (i > 0 && id.Compare(sl.firsts[i-1]) <= 0) {
			return nil, archiveCorrupt(a.where(), "head: chunk %d starts out of order or outside window %d", i, ft.Window)
		}
		sl.firsts[i] = id
	}
	last, ok := in(h.Last)
	if !ok || len(sl.firsts) == 0 || last.Compare(sl.firsts[len(sl.firsts)-1]) < 0 {
		return nil, archiveCorrupt(a.where(), "head: last ID out of order or outside window %d", ft.Window)
	}
	sl.last = last
	for _, f := range countedFields {
		if h.Counts[f] == nil {
			continue
		}
		sl.counts[f] = make(map[string]uint32, len(h.Counts[f]))
		for _, vc := range h.Counts[f] {
			sl.counts[f][vc.Value] = uint32(vc.Count)
		}
	}
	a.mu.Lock()
	a.sl = sl
	a.mu.Unlock()
	return sl, nil
}

// arcDir returns the directory of field f of the archive of view sl.
func (s *Store) arcDir(sl *sealedSeg, f field) (*arcfmt.Dir, error) {
	key := cacheKey{a: sl.arc, kind: keyDir, f: f}
	if v, ok := s.cache.Get(key); ok {
		return v.(*arcfmt.Dir), nil
	}
	d, err := readArchive(sl.ctx, sl.arc, func(r io.ReaderAt, ft *arcfmt.Footer) (*arcfmt.Dir, error) { return ft.ReadDir(r, int(f)) })
	if err != nil {
		return nil, err
	}
	s.loads.Add(1)
	s.cache.Add(key, d, d.Size())
	return d, nil
}

// arcGroup returns value group g of the archive of view sl.
func (s *Store) arcGroup(sl *sealedSeg, g int) ([]byte, error) {
	key := cacheKey{a: sl.arc, kind: keyGroup, i: g}
	if v, ok := s.cache.Get(key); ok {
		return v.([]byte), nil
	}
	raw, err := readArchive(sl.ctx, sl.arc, func(r io.ReaderAt, ft *arcfmt.Footer) ([]byte, error) { return ft.ReadGroup(r, g) })
	if err != nil {
		return nil, err
	}
	s.cache.Add(key, raw, int64(len(raw))+64)
	return raw, nil
}

// arcChunk returns chunk c of the archive of view sl, its IDs checked
// against the descriptor.
func (s *Store) arcChunk(sl *sealedSeg, c int) (*arcChunk, error) {
	key := cacheKey{sl: sl.key(), i: c}
	if v, ok := s.cache.Get(key); ok {
		return v.(*arcChunk), nil
	}
	var limits [arcfmt.NumFields]int
	for f := range numFields {
		d, err := s.arcDir(sl, f)
		if err != nil {
			return nil, err
		}
		limits[f] = len(d.Values)
	}
	ch, err := readArchive(sl.ctx, sl.arc, func(r io.ReaderAt, ft *arcfmt.Footer) (*arcfmt.Chunk, error) { return ft.ReadChunk(r, c, limits) })
	if err != nil {
		return nil, err
	}
	ids := make([]ID, len(ch.IDs))
	for i, p := range ch.IDs {
		if p.Seq <= maxSeq {
			ids[i] = makeID(p.NS, p.Seq)
		}
		if !ids[i].valid() || (i > 0 && ids[i].Compare(ids[i-1]) <= 0) {
			return nil, archiveCorrupt(sl.arc.where(), "chunk %d: entry %d out of order", c, i)
		}
	}
	first, last := ids[0], ids[len(ids)-1]
	if c >= len(sl.firsts) || first != sl.firsts[c] || (c+1 < len(sl.firsts) && last.Compare(sl.firsts[c+1]) >= 0) || (c+1 == len(sl.firsts) && last != sl.last) {
		return nil, archiveCorrupt(sl.arc.where(), "chunk %d disagrees with the head", c)
	}
	ac := &arcChunk{ids: ids, ch: ch}
	s.loads.Add(1)
	s.cache.Add(key, ac, ch.Size())
	return ac, nil
}

// arcValue returns value v of field f in the archive of view sl, nil when
// none of its activities has it.
func (s *Store) arcValue(sl *sealedSeg, f field, v string) (*sealedValue, error) {
	key := cacheKey{sl: sl.key(), i: -1, f: f, v: v}
	if x, ok := s.cache.Get(key); ok {
		return x.(*sealedValue), nil
	}
	d, err := s.arcDir(sl, f)
	if err != nil {
		return nil, err
	}
	var sv *sealedValue
	size := int64(len(v)) + 96
	if i, ok := d.Find(v); ok {
		if d.CopyAt != nil && d.CopyAt[i] > 0 {
			if sv, err = s.arcCopies(sl, d, i); err != nil {
				return nil, err
			}
			size += 16 * int64(len(sv.ids))
			for _, r := range sv.recs {
				size += 24 + int64(len(r))
			}
		} else {
			bm, err := s.arcBitmap(sl, d, i)
			if err != nil {
				return nil, err
			}
			sv = &sealedValue{bm: bm}
		}
		size += int64(sv.bm.GetSizeInBytes())
	}
	s.cache.Add(key, sv, size)
	return sv, nil
}

// arcCopies returns user value i of directory d, which has copies, from its
// copy block alone: its ordinals, IDs and records, as a sealed segment keeps
// a sparse user's.
func (s *Store) arcCopies(sl *sealedSeg, d *arcfmt.Dir, i int) (*sealedValue, error) {
	a := sl.arc
	ft, err := a.footer(sl.ctx)
	if err != nil {
		return nil, err
	}
	at, n := int(d.CopyAt[i])-1, int(d.Counts[i])
	k := ft.CopyBlockAt(at)
	b, err := s.copyBlock(sl.ctx, a, k)
	if err != nil {
		return nil, err
	}
	user := d.Values[i]
	j0 := at - ft.Copies[k].First
	if b.Rows == nil || j0+n > b.Len() {
		return nil, archiveCorrupt(a.where(), "copy block %d lacks the copies of user %q", k, user)
	}
	sv := &sealedValue{ids: make([]ID, n), recs: make([][]byte, n)}
	ords := make([]uint32, n)
	size := 0
	for t := range n {
		api, det := b.Record(j0 + t)
		size += len(api) + len(det) + 64
	}
	buf := make([]byte, 0, size)
	for t := range n { // newest first in the block; ascending here
		j, q := j0+t, n-1-t
		p := b.Rows.IDs[j]
		var id ID
		if p.Seq <= maxSeq {
			id = makeID(p.NS, p.Seq)
		}
		o := b.Rows.Ords[j]
		if !id.valid() || id.Compare(sl.firsts[0]) < 0 || id.Compare(sl.last) > 0 || int(o) >= sl.n ||
			(t > 0 && (id.Compare(sv.ids[q+1]) >= 0 || o >= ords[q+1])) {
			return nil, archiveCorrupt(a.where(), "copy block %d: copy %d of user %q is out of order or outside the window", k, t, user)
		}
		sv.ids[q], ords[q] = id, o
		api, det := b.Record(j)
		label := func(f field) string { return str(b.Rows.Label(j, int(f))) }
		start := len(buf)
		buf = record.Append(buf, &record.Fields{Type: label(fieldType), UserID: user, Module: label(fieldModule), Action: label(fieldAction),
			APICall: str(api), Resource: label(fieldResource), Details: det})
		sv.recs[q] = buf[start:len(buf):len(buf)]
	}
	sv.bm = roaring.BitmapOf(ords...)
	return sv, nil
}

// arcBitmap returns the ordinals of value i of directory d.
func (s *Store) arcBitmap(sl *sealedSeg, d *arcfmt.Dir, i int) (*roaring.Bitmap, error) {
	group, err := s.arcGroup(sl, d.Group(i))
	if err != nil {
		return nil, err
	}
	ords, err := d.Ordinals(i, group, sl.n, nil)
	if err != nil {
		return nil, archiveErr(sl.arc.where(), err)
	}
	bm := roaring.New()
	bm.AddMany(ords)
	return bm, nil
}

// arcField returns every value of field f in the archive of view sl with
// its ordinals.
func (s *Store) arcField(sl *sealedSeg, f field) ([]valueBitmap, error) {
	d, err := s.arcDir(sl, f)
	if err != nil {
		return nil, err
	}
	out := make([]valueBitmap, len(d.Values))
	for i, v := range d.Values {
		bm, err := s.arcBitmap(sl, d, i)
		if err != nil {
			return nil, err
		}
		out[i] = valueBitmap{v: v, bm: bm}
	}
	return out, nil
}

// arcRows finds the activities of ids in the archive of view sl: their
// ordinals, blocks and copy positions, and a function that fills an
// activity from its record.
func (s *Store) arcRows(sl *sealedSeg, ft *arcfmt.Footer, ids []ID, out []Activity) ([]arcRow, func(k int, api, det []byte), error) {
	rows := make([]arcRow, len(ids))
	chunks := make([]*arcChunk, len(ids))
	var ch *arcChunk // the chunk of the last ID: a page's IDs are often in the same
	ci := -1
	for k, id := range ids {
		// The chunk holding id: the last one starting at or before it.
		c := sort.Search(len(sl.firsts), func(i int) bool { return sl.firsts[i].Compare(id) > 0 }) - 1
		j := -1
		if c >= 0 {
			if c != ci {
				var err error
				if ch, err = s.arcChunk(sl, c); err != nil {
					return nil, nil, err
				}
				ci = c
			}
			j, _ = slices.BinarySearchFunc(ch.ids, id, ID.Compare)
		}
		if j < 0 || j >= len(ch.ids) || ch.ids[j] != id {
			return nil, nil, &CorruptionError{Where: "archive " + sl.arc.where(), Err: fmt.Errorf("activity %s is indexed but missing", id)}
		}
		o := c*sl.chunk + j
		chunks[k] = ch
		rows[k] = arcRow{ord: o, at: ft.BlockAt(ft.N - 1 - o), cp: int(ch.ch.Copies[j]) - 1}
	}
	var dirs [numFields]*arcfmt.Dir
	for f := range numFields {
		var err error
		if dirs[f], err = s.arcDir(sl, f); err != nil {
			return nil, nil, err
		}
	}
	fill := func(k int, api, det []byte) {
		j := rows[k].ord % sl.chunk
		var labels [numFields]string
		for f := range numFields {
			labels[f] = dirs[f].Values[chunks[k].ch.Labels[f][j]]
		}
		archivedActivity(&out[k], ids[k], &labels, api, det)
	}
	return rows, fill, nil
}
