package activitystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/activitystore/activitystore/internal/codec"
)

// A sealed segment lives in pebble and is read piece by piece: Open reads
// only its descriptor; a query reads the bitmaps of the values it filters
// on and the chunks of the ID column that hold its matches, each through
// the store's byte-bounded cache. Nothing of it stays in memory otherwise.
//
// Persisted form (see keys.go for the keys):
//
//	descriptor: version byte, generation, activity count n, IDs per chunk,
//	            the inline limit and the bytes of inline IDs (version 3),
//	            the copy limit and the bytes of record copies (version 4),
//	            serialized bitmap bytes per field, for each counted field
//	            (type, module, action; version 5) the number of its values
//	            and each value (uvarint length, bytes) with its activity
//	            count, or 0 when it has more than countedValues, then the
//	            first ID of every chunk and the last ID (16 bytes each),
//	            CRC-32C
//	value:      roaring portable serialization of the ordinals; when they
//	            are at most the inline limit, their IDs (16 bytes each,
//	            ascending); for a user_id value with at most the copy limit
//	            of them, a byte 1 and each record (uvarint length, bytes)
//	            in the same order, or a byte 0 for none, or (version 6) a
//	            byte 2: they are in the user's entry; CRC-32C
//	ID chunk:   up to chunk IDs of 16 bytes, ascending, CRC-32C
//	user entry: (version 6, when the copy limit is not 0) one per user of
//	            the segment: a byte 1 and the user's value as above with
//	            its copies (byte 1 and the records) when it has them, else
//	            a byte 0; CRC-32C
//
// Ordinals of a sealed segment are in ID order, so ordinal o is the o-th ID
// of the column and no ordinal is late. A sparse value (a light user, a
// rare resource) keeps its IDs beside its bitmap, so a query for it reads
// one key per segment and no ID chunk; a sparse user also keeps a copy of
// its records, so "this user's recent activity" reads no record key at
// all. Since version 6 those copies are in the user's entries, which sort
// by user and then newest window first: one short scan reads a light
// user's values in many windows, where a key per window would read a block
// of each.
const sealedVersion = 6

// countedFields are the fields whose activity counts per value the
// descriptor keeps (when they have at most countedValues values), so that
// counting a whole sealed window by them reads no bitmap.
var countedFields = [...]field{fieldType, fieldModule, fieldAction}

const countedValues = 256

// copyField is the field whose sparse values keep copies of their records.
const copyField = fieldUser

// inlineIDs is the default inline limit: a value with at most this many
// activities in a sealed segment keeps their IDs (at most 1 KiB) in its key.
const inlineIDs = 64

// chunkIDs is how many IDs one chunk of a sealed ID column holds (16 KiB)
// in the segments this version seals; a descriptor says what its segment
// used, from 64 to 65536.
const chunkIDs = 1024

// sealedSeg is the descriptor of a sealed segment.
type sealedSeg struct {
	window int64
	gen    uint64 // in the keys of its bitmaps and chunks
	n      int
	chunk  int                          // IDs per chunk of the ID column
	inline int                          // values with at most this many ordinals keep their IDs in their key
	idsIn  uint64                       // bytes of IDs kept in value keys
	copies int                          // user values with at most this many ordinals may keep copies of their records; 0 none
	recsIn uint64                       // bytes of record copies kept in value keys or user entries
	far    bool                         // every user of it has a user entry (version 6, copies > 0)
	firsts []ID                         // first ID of each chunk
	last   ID                           // the newest ID
	bytes  [numFields]uint64            // serialized bitmap bytes per field
	counts [numFields]map[string]uint32 // activities per value of the counted fields; nil when not kept

	convMu sync.Mutex // held while an append loads it to open it again

	// A window in an archive of format 3 (archive_lazy.go): its data is
	// read from arc. A query's view of it names base, the archive's own
	// descriptor, and carries the query's ctx.
	arc  *archive
	base *sealedSeg
	ctx  context.Context
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func appendCRC(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func checkCRC(b []byte) ([]byte, bool) {
	if len(b) < 4 {
		return nil, false
	}
	body := b[:len(b)-4]
	return body, crc32.Checksum(body, crcTable) == binary.BigEndian.Uint32(b[len(b)-4:])
}

func (sl *sealedSeg) where() string {
	if sl.arc != nil {
		return "archive " + sl.arc.where()
	}
	return fmt.Sprintf("segment %d", sl.window)
}

func (sl *sealedSeg) encode() []byte {
	b := []byte{sealedVersion}
	b = binary.AppendUvarint(b, sl.gen)
	b = binary.AppendUvarint(b, uint64(sl.n))
	b = binary.AppendUvarint(b, uint64(sl.chunk))
	b = binary.AppendUvarint(b, uint64(sl.inline))
	b = binary.AppendUvarint(b, sl.idsIn)
	b = binary.AppendUvarint(b, uint64(sl.copies))
	b = binary.AppendUvarint(b, sl.recsIn)
	for _, x := range sl.bytes {
		b = binary.AppendUvarint(b, x)
	}
	for _, f := range countedFields {
		b = binary.AppendUvarint(b, uint64(len(sl.counts[f])))
		vs := make([]string, 0, len(sl.counts[f]))
		for v := range sl.counts[f] {
			vs = append(vs, v)
		}
		slices.Sort(vs) // the same descriptor for the same segment
		for _, v := range vs {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
			b = binary.AppendUvarint(b, uint64(sl.counts[f][v]))
		}
	}
	for _, id := range sl.firsts {
		b = append(b, id[:]...)
	}
	b = append(b, sl.last[:]...)
	return appendCRC(b)
}

// decodeDescriptor parses the descriptor of window w's sealed segment.
func decodeDescriptor(w, width int64, v []byte) (*sealedSeg, error) {
	sl := &sealedSeg{window: w}
	body, ok := checkCRC(v)
	if !ok {
		return nil, corruptf(sl.where(), "descriptor: checksum mismatch")
	}
	d := codec.Decoder{B: body}
	ver := d.Byte()
	sl.gen = d.Uvarint()
	n, per := d.Uvarint(), d.Uvarint()
	var inline, copies uint64
	if ver >= 3 {
		inline, sl.idsIn = d.Uvarint(), d.Uvarint()
	}
	if ver >= 4 {
		copies, sl.recsIn = d.Uvarint(), d.Uvarint()
	}
	for f := range sl.bytes {
		sl.bytes[f] = d.Uvarint()
	}
	if ver >= 5 {
		for _, f := range countedFields {
			k := d.Uvarint()
			if k > countedValues || d.Err != nil {
				return nil, corruptf(sl.where(), "descriptor: malformed counts")
			}
			if k == 0 {
				continue
			}
			sl.counts[f] = make(map[string]uint32, k)
			sum := uint64(0)
			for range k {
				v := d.Bytes()
				c := d.Uvarint()
				sum += c
				if d.Err != nil || c == 0 || c > n || sum > n || len(v) > MaxLabelBytes {
					return nil, corruptf(sl.where(), "descriptor: malformed counts")
				}
				sl.counts[f][string(v)] = uint32(c)
			}
		}
	}
	if d.Err != nil || ver < 2 || ver > sealedVersion || per < 64 || per > 1<<16 || n == 0 || n >= 1<<32 || inline > 1<<16 || copies > inline || sl.idsIn > 16*n*uint64(numFields) {
		return nil, corruptf(sl.where(), "descriptor: malformed")
	}
	sl.n, sl.chunk, sl.inline, sl.copies = int(n), int(per), int(inline), int(copies)
	sl.far = ver >= 6 && copies > 0
	nc := (sl.n + sl.chunk - 1) / sl.chunk
	if len(d.B) != 16*(nc+1) {
		return nil, corruptf(sl.where(), "descriptor: %d bytes of IDs for %d chunks", len(d.B), nc)
	}
	sl.firsts = make([]ID, nc)
	for i := range sl.firsts {
		copy(sl.firsts[i][:], d.B[16*i:])
	}
	copy(sl.last[:], d.B[16*nc:])
	lo, hi := idFloor(w*width), idFloor((w+1)*width)
	if (w+1)*width < 0 || (w+1)*width/width != w+1 {
		hi = maxID
	}
	in := func(id ID) bool { return id.valid() && id.Compare(lo) >= 0 && id.Compare(hi) < 0 }
	for i, id := range sl.firsts {
		if !in(id) || (i > 0 && id.Compare(sl.firsts[i-1]) <= 0) {
			return nil, corruptf(sl.where(), "descriptor: chunk %d starts out of order or outside the window", i)
		}
	}
	if !in(sl.last) || sl.last.Compare(sl.firsts[nc-1]) < 0 {
		return nil, corruptf(sl.where(), "descriptor: last ID out of order or outside the window")
	}
	return sl, nil
}

// persist returns the descriptor and the keys and values of a sorted
// segment's sealed form. The caller holds seg.mu; RunOptimize changes the
// bitmaps, so for writing. When recs is set, each user value with at most
// copies activities keeps copies of their records, as recs gives them by
// ID; a value with a record recs lacks keeps none. set must copy its
// arguments, as a pebble batch does.
func (seg *segment) persist(gen uint64, inline, copies int, recs map[ID][]byte, dicts *[numFields]dict, set func(k, v []byte) error) (*sealedSeg, error) {
	if seg.late != nil {
		return nil, fmt.Errorf("activitystore: segment %d is not sorted", seg.window)
	}
	if len(seg.ids) == 0 {
		return nil, fmt.Errorf("activitystore: segment %d is empty", seg.window)
	}
	if recs == nil {
		copies = 0
	}
	copies = min(copies, inline)
	sl := &sealedSeg{window: seg.window, gen: gen, n: len(seg.ids), chunk: chunkIDs, inline: inline, copies: copies, far: copies > 0, last: seg.ids[len(seg.ids)-1]}
	var k, v []byte
	for c := 0; c*sl.chunk < len(seg.ids); c++ {
		ids := seg.ids[c*sl.chunk : min((c+1)*sl.chunk, len(seg.ids))]
		sl.firsts = append(sl.firsts, ids[0])
		v = v[:0]
		for _, id := range ids {
			v = append(v, id[:]...)
		}
		k = chunkKey(k[:0], seg.window, gen, c)
		if err := set(k, appendCRC(v)); err != nil {
			return nil, err
		}
	}
	for _, f := range countedFields {
		if len(seg.bms[f]) > countedValues {
			continue
		}
		sl.counts[f] = make(map[string]uint32, len(seg.bms[f]))
		for vn, bm := range seg.bms[f] {
			sl.counts[f][dicts[f].value(vn)] = uint32(bm.GetCardinality())
		}
	}
	var buf appendBuf // reused: set copies what it is given
	var entry []byte  // a user's entry
	for f := range numFields {
		for vn, bm := range seg.bms[f] {
			bm.RunOptimize()
			buf.b = buf.b[:0]
			if _, err := bm.WriteTo(&buf); err != nil {
				return nil, err
			}
			data := buf.b
			sl.bytes[f] += uint64(len(data))
			far := sl.far && field(f) == copyField
			entry = append(entry[:0], 0)
			if c := bm.GetCardinality(); c <= uint64(inline) {
				for it := bm.Iterator(); it.HasNext(); {
					id := seg.ids[it.Next()]
					data = append(data, id[:]...)
				}
				sl.idsIn += 16 * c
				if field(f) == copyField && c <= uint64(copies) {
					before := len(data)
					data = appendCopies(data, bm, seg.ids, recs)
					sl.recsIn += uint64(len(data) - before)
					if far && data[before] == 1 {
						// The copies go to the user's entry, with the
						// bitmap and the IDs, so that it answers alone.
						entry = append(entry[:0], 1)
						entry = append(entry, data...)
						data = append(data[:before], 2)
					}
				}
			}
			v := dicts[f].value(vn)
			k = bitmapKey(k[:0], seg.window, gen, f, v)
			data = appendCRC(data)
			if err := set(k, data); err != nil {
				return nil, err
			}
			buf.b = data
			if far {
				k = userKey(k[:0], v, seg.window, gen)
				entry = appendCRC(entry)
				if err := set(k, entry); err != nil {
					return nil, err
				}
			}
		}
	}
	return sl, nil
}

// appendBuf is an io.Writer that appends to b.
type appendBuf struct{ b []byte }

func (a *appendBuf) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// appendCopies appends to data the copies of the records of bm's members,
// each ID's record as recs has it: a byte 1, then each record as a uvarint
// length and its bytes, or the byte 0 when recs lacks one of them.
func appendCopies(data []byte, bm *roaring.Bitmap, ids []ID, recs map[ID][]byte) []byte {
	for it := bm.Iterator(); it.HasNext(); {
		if recs[ids[it.Next()]] == nil {
			return append(data, 0)
		}
	}
	data = append(data, 1)
	for it := bm.Iterator(); it.HasNext(); {
		r := recs[ids[it.Next()]]
		data = binary.AppendUvarint(data, uint64(len(r)))
		data = append(data, r...)
	}
	return data
}

// cacheKey names one piece of loaded data in the store's cache: a block
// (i >= 0; a copy block if cp) or the index (i = -1) of an archive, or of a
// sealed segment an ID chunk (i >= 0), the bitmap of one value (i = -1) or
// the bitmaps of a whole field (i = -2); of an archive of format 3, a value
// group (kind keyGroup, i) or a field's directory (kind keyDir, f).
type cacheKey struct {
	a    *archive
	sl   *sealedSeg
	i    int
	cp   bool
	kind uint8
	f    field
	v    string
}

// Kinds of cacheKey beyond blocks, indexes and sealed pieces.
const (
	keyGroup = 1 + iota
	keyDir
)

// idChunk returns chunk c of sl's ID column.
func (s *Store) idChunk(sl *sealedSeg, c int) ([]ID, error) {
	ids, err := s.idChunkRaw(sl, c)
	return ids, s.fault(sl, err)
}

func (s *Store) idChunkRaw(sl *sealedSeg, c int) ([]ID, error) {
	if sl.arc != nil {
		ch, err := s.arcChunk(sl, c)
		if err != nil {
			return nil, err
		}
		return ch.ids, nil
	}
	key := cacheKey{sl: sl, i: c}
	if v, ok := s.cache.Get(key); ok {
		return v.([]ID), nil
	}
	if c < 0 || c >= len(sl.firsts) {
		return nil, corruptf(sl.where(), "no ID chunk %d", c)
	}
	raw, c2, err := s.db.Get(chunkKey(nil, sl.window, sl.gen, c))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, corruptf(sl.where(), "ID chunk %d is missing", c)
	}
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot read %s: %w", sl.where(), err)
	}
	defer c2.Close()
	s.loads.Add(1)
	ids, err := sl.decodeChunk(c, raw, nil)
	if err != nil {
		return nil, err
	}
	s.cache.Add(key, ids, int64(16*len(ids))+64)
	return ids, nil
}

// decodeChunk checks chunk c of sl's ID column, as read from pebble, and
// appends its IDs to dst.
func (sl *sealedSeg) decodeChunk(c int, raw []byte, dst []ID) ([]ID, error) {
	body, ok := checkCRC(raw)
	want := min(sl.chunk, sl.n-c*sl.chunk)
	if !ok || want <= 0 || len(body) != 16*want {
		return nil, corruptf(sl.where(), "ID chunk %d: bad checksum or length", c)
	}
	start := len(dst)
	for i := range want {
		var id ID
		copy(id[:], body[16*i:])
		if !id.valid() || (i > 0 && id.Compare(dst[len(dst)-1]) <= 0) {
			return nil, corruptf(sl.where(), "ID chunk %d: entry %d out of order", c, i)
		}
		dst = append(dst, id)
	}
	first, last := dst[start], dst[len(dst)-1]
	if first != sl.firsts[c] || (c+1 < len(sl.firsts) && last.Compare(sl.firsts[c+1]) >= 0) || (c+1 == len(sl.firsts) && last != sl.last) {
		return nil, corruptf(sl.where(), "ID chunk %d disagrees with the descriptor", c)
	}
	return dst, nil
}

// idAt returns the ID of ordinal o of sl.
func (s *Store) idAt(sl *sealedSeg, o int) (ID, error) {
	ids, err := s.idChunk(sl, o/sl.chunk)
	if err != nil {
		return ID{}, err
	}
	return ids[o%sl.chunk], nil
}

// sealedBound returns the first ordinal of sl whose ID is >= x.
func (s *Store) sealedBound(sl *sealedSeg, x ID) (uint32, error) {
	if x.Compare(sl.firsts[0]) <= 0 {
		return 0, nil
	}
	if x.Compare(sl.last) > 0 {
		return uint32(sl.n), nil
	}
	c := sort.Search(len(sl.firsts), func(i int) bool { return sl.firsts[i].Compare(x) > 0 }) - 1
	ids, err := s.idChunk(sl, c)
	if err != nil {
		return 0, err
	}
	return uint32(c*sl.chunk + sort.Search(len(ids), func(i int) bool { return ids[i].Compare(x) >= 0 })), nil
}

// sealedValue is what a sealed segment holds for one label value: its
// ordinals and, for a sparse value, their IDs in the same order, and for a
// sparse user the copies of their records.
type sealedValue struct {
	bm   *roaring.Bitmap
	ids  []ID
	recs [][]byte
	far  bool // its copies are in the user's entry, not read with it
}

// sealedBitmap returns the value v of field f in sl, nil when no activity
// of sl has it. It is shared: never change it.
func (s *Store) sealedBitmap(sl *sealedSeg, f field, v string) (*sealedValue, error) {
	sv, err := s.sealedValueRaw(sl, f, v)
	return sv, s.fault(sl, err)
}

func (s *Store) sealedValueRaw(sl *sealedSeg, f field, v string) (*sealedValue, error) {
	if sl.arc != nil {
		return s.arcValue(sl, f, v)
	}
	key := cacheKey{sl: sl, i: -1, f: f, v: v}
	if x, ok := s.cache.Get(key); ok {
		return x.(*sealedValue), nil
	}
	if f == copyField && sl.far {
		if err := s.scanUser(sl, v); err != nil {
			return nil, err
		}
		if x, ok := s.cache.Get(key); ok {
			return x.(*sealedValue), nil
		}
	}
	raw, c, err := s.db.Get(bitmapKey(nil, sl.window, sl.gen, f, v))
	var sv *sealedValue
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if !s.current(sl) {
			return nil, corruptf(sl.where(), "bitmap of %q is gone", v)
		}
	case err != nil:
		return nil, fmt.Errorf("activitystore: cannot read %s: %w", sl.where(), err)
	default:
		s.loads.Add(1)
		x, err := decodeSealedValue(raw, sl, f, v, true)
		c.Close()
		if err == nil && x.far {
			err = s.userCopies(sl, v, &x)
		}
		if err != nil {
			return nil, err
		}
		sv = &x
	}
	s.cacheValue(sl, f, v, sv)
	return sv, nil
}

// cacheValue puts value v of field f in sl in the cache: sv, or nil for
// none.
func (s *Store) cacheValue(sl *sealedSeg, f field, v string, sv *sealedValue) {
	size := int64(len(v)) + 96
	if sv != nil {
		size += int64(sv.bm.GetSizeInBytes()) + 16*int64(len(sv.ids)) + 24*int64(len(sv.recs))
		for _, r := range sv.recs {
			size += int64(len(r))
		}
	}
	s.cache.Add(cacheKey{sl: sl, i: -1, f: f, v: v}, sv, size)
}

// userCopies sets the copies of sv, user v's value in sl, from the user's
// entry, which must hold the same IDs.
func (s *Store) userCopies(sl *sealedSeg, v string, sv *sealedValue) error {
	raw, c, err := s.db.Get(userKey(nil, v, sl.window, sl.gen))
	if errors.Is(err, pebble.ErrNotFound) {
		return corruptf(sl.where(), "entry of %s %q is gone", copyField, v)
	}
	if err != nil {
		return fmt.Errorf("activitystore: cannot read %s: %w", sl.where(), err)
	}
	e, ok, err := decodeUserEntry(raw, sl, v)
	c.Close()
	if err != nil {
		return err
	}
	if !ok || !slices.Equal(e.ids, sv.ids) || !e.bm.Equals(sv.bm) {
		return corruptf(sl.where(), "entry of %s %q disagrees with its value", copyField, v)
	}
	sv.recs, sv.far = e.recs, false
	return nil
}

// Bounds of one scanUser: it stops once its entries hold this many
// activities or bytes, a page of 50 and a little more. A user with more
// activities than that in a few windows is scanned again from where the
// query got to: reading ahead much further reads entries no page asks for.
const (
	scanUserActs  = 64
	scanUserBytes = 32 << 10
)

// scanUser reads user v's entries from sl's window back, in one scan, and
// puts in the cache, for each sealed segment it passes, the user's value
// there (from entries with copies) or nil (no entry: the user has no
// activity there). It stops at an entry without copies (a user with many
// activities there, whose value is read from its value key when asked
// for), or at its bounds.
func (s *Store) scanUser(sl *sealedSeg, v string) error {
	// The spans are taken before the scan: each segment in them was
	// committed before they were, so its entries are in the scan if it is
	// still current once the scan is done (a segment replaced is never
	// current again).
	spans := s.allSpans()
	s.hook("userscan")
	i := sort.Search(len(spans), func(i int) bool { return spans[i].window <= sl.window })
	// absent notes the segment of a span when it has user entries: the scan
	// passed its window without finding one.
	var none []*sealedSeg
	absent := func(sp span) {
		if sp.hot == nil && sp.sl != nil && sp.sl.far {
			none = append(none, sp.sl)
		}
	}
	p := userPrefix(nil, v)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: userKey(nil, v, sl.window, 0), UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	acts, bytes, done := 0, 0, true
	for it.First(); it.Valid(); it.Next() {
		_, w, gen, ok := userKeyParts(it.Key())
		if !ok {
			done = false
			break
		}
		for ; i < len(spans) && spans[i].window > w; i++ {
			absent(spans[i])
		}
		if i == len(spans) || spans[i].window != w || spans[i].hot != nil || spans[i].sl == nil || spans[i].sl.gen != gen || !spans[i].sl.far {
			continue // an entry of a segment replaced since, or open again
		}
		cur := spans[i].sl
		raw, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		sv, ok, err := decodeUserEntry(raw, cur, v)
		if err != nil || !ok {
			// The value key answers for this one, and reports what is
			// wrong with it.
			done = false
			break
		}
		s.loads.Add(1)
		s.cacheValue(cur, copyField, v, &sv)
		i++
		acts, bytes = acts+len(sv.ids), bytes+len(raw)
		if acts >= scanUserActs || bytes >= scanUserBytes {
			done = false
			break
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if done {
		for ; i < len(spans); i++ {
			absent(spans[i])
		}
	}
	// A segment replaced since the spans were taken lost its entries to the
	// new one: a reader still holding it finds its value key gone instead,
	// and runs again.
	s.mu.RLock()
	none = slices.DeleteFunc(none, func(sl *sealedSeg) bool { return s.sealed[sl.window] != sl })
	s.mu.RUnlock()
	for _, sl := range none {
		s.cacheValue(sl, copyField, v, nil)
	}
	return nil
}

// decodeSealedValue parses the value of v in field f of sl as read from
// pebble: its bitmap and, when sl keeps them inline, its IDs and, if
// copies, the copies of its records (which share raw's bytes with none).
func decodeSealedValue(raw []byte, sl *sealedSeg, f field, v string, copies bool) (sealedValue, error) {
	body, ok := checkCRC(raw)
	if !ok {
		return sealedValue{}, corruptf(sl.where(), "field %s: bitmap of %q: checksum mismatch", f, v)
	}
	return decodeSealedBody(body, sl, f, v, copies, sl.far)
}

// decodeUserEntry parses user v's entry in sl: its value with the copies
// of its records, or false when the entry says to read the value key.
func decodeUserEntry(raw []byte, sl *sealedSeg, v string) (sealedValue, bool, error) {
	body, ok := checkCRC(raw)
	if !ok || len(body) == 0 {
		return sealedValue{}, false, corruptf(sl.where(), "entry of %s %q: checksum mismatch", copyField, v)
	}
	switch {
	case body[0] == 0 && len(body) == 1:
		return sealedValue{}, false, nil
	case body[0] == 1:
		sv, err := decodeSealedBody(body[1:], sl, copyField, v, true, false)
		if err == nil && sv.recs == nil {
			err = corruptf(sl.where(), "entry of %s %q: no record copies", copyField, v)
		}
		return sv, err == nil, err
	}
	return sealedValue{}, false, corruptf(sl.where(), "entry of %s %q: malformed", copyField, v)
}

// decodeSealedBody is decodeSealedValue past the checksum; far tells
// whether a byte 2 may say that the copies are in the user's entry.
func decodeSealedBody(body []byte, sl *sealedSeg, f field, v string, copies, far bool) (sealedValue, error) {
	own := copies && f == copyField
	if own {
		// One copy of the value, which the bitmap and the record copies
		// then share, rather than a copy of each.
		body = bytes.Clone(body)
	}
	bm, used, err := decodeBitmapPrefix(body, sl.n, own)
	if err != nil {
		return sealedValue{}, corruptf(sl.where(), "field %s: bitmap of %q: %v", f, v, err)
	}
	rest := body[used:]
	card := bm.GetCardinality()
	if card > uint64(sl.inline) {
		if len(rest) != 0 {
			return sealedValue{}, corruptf(sl.where(), "field %s: bitmap of %q: %d bytes after it", f, v, len(rest))
		}
		return sealedValue{bm: bm}, nil
	}
	var tail []byte
	if f == copyField && card <= uint64(sl.copies) {
		if uint64(len(rest)) < 16*card+1 {
			return sealedValue{}, corruptf(sl.where(), "field %s: value %q: %d bytes of IDs and copies for %d activities", f, v, len(rest), card)
		}
		rest, tail = rest[:16*card], rest[16*card:]
	}
	if uint64(len(rest)) != 16*card {
		return sealedValue{}, corruptf(sl.where(), "field %s: value %q: %d bytes of IDs for %d activities", f, v, len(rest), card)
	}
	ids := make([]ID, card)
	for i := range ids {
		copy(ids[i][:], rest[16*i:])
		if !ids[i].valid() || (i > 0 && ids[i].Compare(ids[i-1]) <= 0) || ids[i].Compare(sl.firsts[0]) < 0 || ids[i].Compare(sl.last) > 0 {
			return sealedValue{}, corruptf(sl.where(), "field %s: value %q: ID %d out of order or outside the segment", f, v, i)
		}
	}
	sv := sealedValue{bm: bm, ids: ids}
	if tail == nil || (tail[0] == 0 && len(tail) == 1) {
		return sv, nil
	}
	if far && tail[0] == 2 && len(tail) == 1 {
		sv.far = true
		return sv, nil
	}
	bad := func() (sealedValue, error) {
		return sealedValue{}, corruptf(sl.where(), "field %s: value %q: malformed record copies", f, v)
	}
	if tail[0] != 1 {
		return bad()
	}
	d := codec.Decoder{B: tail[1:]}
	if own {
		sv.recs = make([][]byte, card)
	}
	for i := range ids {
		n := d.Uvarint()
		if d.Err != nil || n == 0 || n > uint64(len(d.B)) {
			return bad()
		}
		if own {
			sv.recs[i] = d.B[:n:n]
		}
		d.B = d.B[n:]
	}
	if len(d.B) != 0 {
		return bad()
	}
	return sv, nil
}

// valueBitmap is one value of a field with its ordinals.
type valueBitmap struct {
	v    string
	bm   *roaring.Bitmap
	ids  []ID     // inline IDs, for a sparse value
	recs [][]byte // copies of its records, for a sparse user, when asked for
}

// sealedField returns every value of field f in sl with its bitmap.
func (s *Store) sealedField(sl *sealedSeg, f field) ([]valueBitmap, error) {
	key := cacheKey{sl: sl.key(), i: -2, f: f}
	if x, ok := s.cache.Get(key); ok {
		return x.([]valueBitmap), nil
	}
	out, err := s.sealedFieldUncached(sl, f, false)
	if err != nil {
		return nil, s.fault(sl, err)
	}
	size := int64(64)
	for _, vb := range out {
		size += int64(len(vb.v)) + 64 + int64(vb.bm.GetSizeInBytes()) + 16*int64(len(vb.ids))
	}
	s.loads.Add(1)
	s.cache.Add(key, out, size)
	return out, nil
}

// loadSealed reads the whole sealed segment of sl into a new in-memory
// segment, numbering its values in dicts, and checks that every ordinal has
// exactly one value per field. It bypasses the cache. If copies is not nil,
// it receives the record copies sl keeps, by ID.
func (s *Store) loadSealed(sl *sealedSeg, dicts *[numFields]dict, copies map[ID][]byte) (*segment, error) {
	seg := newSegment(sl.window)
	seg.ids = make([]ID, 0, sl.n)
	lo := chunkKey(nil, sl.window, sl.gen, 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo[:18])})
	if err != nil {
		return nil, err
	}
	c := 0
	for it.First(); it.Valid(); it.Next() {
		if c >= len(sl.firsts) || !bytes.Equal(it.Key(), chunkKey(nil, sl.window, sl.gen, c)) {
			it.Close()
			return nil, corruptf(sl.where(), "ID chunk %d is missing", c)
		}
		raw, err := it.ValueAndErr()
		if err == nil {
			seg.ids, err = sl.decodeChunk(c, raw, seg.ids)
		}
		if err != nil {
			it.Close()
			return nil, err
		}
		c++
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	// Each chunk starts at its descriptor entry and ends below the next
	// one: all of them present, the column is whole and in order.
	if c != len(sl.firsts) {
		return nil, corruptf(sl.where(), "ID column holds %d of %d chunks", c, len(sl.firsts))
	}
	for f := range numFields {
		vals, err := s.sealedFieldUncached(sl, f, copies != nil && field(f) == copyField)
		if err != nil {
			return nil, err
		}
		var total uint64
		all := roaring.New()
		for _, vb := range vals {
			if vb.ids != nil {
				i := 0
				for it := vb.bm.Iterator(); it.HasNext(); i++ {
					if seg.ids[it.Next()] != vb.ids[i] {
						return nil, corruptf(sl.where(), "field %s: value %q: its IDs disagree with the ID column", field(f), vb.v)
					}
				}
			}
			for i, r := range vb.recs {
				copies[vb.ids[i]] = r
			}
			total += vb.bm.GetCardinality()
			all.Or(vb.bm)
			seg.bms[f][dicts[f].intern(vb.v)] = vb.bm
		}
		if total != uint64(sl.n) || all.GetCardinality() != uint64(sl.n) {
			return nil, corruptf(sl.where(), "field %s: bitmaps hold %d ordinals for %d activities", field(f), total, sl.n)
		}
	}
	seg.sealed = true
	return seg, nil
}

// sealedFieldUncached reads every value of field f in sl from pebble, with
// the copies of their records if copies (a read of its entry per user,
// where the copies are there).
func (s *Store) sealedFieldUncached(sl *sealedSeg, f field, copies bool) ([]valueBitmap, error) {
	if sl.arc != nil {
		return s.arcField(sl, f)
	}
	p := fieldPrefix(sl.window, sl.gen, f)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []valueBitmap
	for it.First(); it.Valid(); it.Next() {
		v := string(it.Key()[len(p):])
		raw, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		sv, err := decodeSealedValue(raw, sl, f, v, copies)
		if err == nil && sv.far && copies {
			err = s.userCopies(sl, v, &sv)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, valueBitmap{v, sv.bm, sv.ids, sv.recs})
	}
	return out, it.Error()
}

// sealedFault is the error of a read from a sealed segment that found its
// data corrupt, or gone because the segment was replaced after the reader
// looked it up (stale). The read path repairs a corrupt segment that is
// still current, and runs the read again.
type sealedFault struct {
	sl    *sealedSeg
	stale bool
	err   error
}

func (e *sealedFault) Error() string { return e.err.Error() }
func (e *sealedFault) Unwrap() error { return e.err }

// fault wraps a corruption error from a read of sl in a *sealedFault.
func (s *Store) fault(sl *sealedSeg, err error) error {
	var ce *CorruptionError
	if err == nil || sl.arc != nil || !errors.As(err, &ce) {
		return err // an archive has no records to rebuild from
	}
	return &sealedFault{sl: sl, stale: !s.current(sl), err: err}
}

// current reports whether sl is the sealed segment of its window.
func (s *Store) current(sl *sealedSeg) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sealed[sl.window] == sl
}

// deleteUserEntries adds to b the deletion of the user entries of window
// w's form in pebble, the one its descriptor names: one per user value of
// that form. When the descriptor or the values cannot be read, it deletes
// every user entry of w, found by a scan of all of them.
func (s *Store) deleteUserEntries(b *pebble.Batch, w int64) error {
	v, c, err := s.db.Get(windowKey(prefixDescriptor, w))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("activitystore: cannot read segment %d: %w", w, err)
	}
	sl, derr := decodeDescriptor(w, s.width, v)
	c.Close()
	if derr == nil && !sl.far {
		return nil
	}
	if derr == nil {
		p := fieldPrefix(w, sl.gen, copyField)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		var k []byte
		for it.First(); it.Valid(); it.Next() {
			k = userKey(k[:0], string(it.Key()[len(p):]), w, sl.gen)
			if err := b.Delete(k, nil); err != nil {
				it.Close()
				return err
			}
		}
		if it.Close() == nil {
			return nil
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixUser}, UpperBound: []byte{prefixUser + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if _, kw, _, ok := userKeyParts(it.Key()); !ok || kw == w {
			if err := b.Delete(it.Key(), nil); err != nil {
				it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("activitystore: cannot read the user entries of segment %d: %w", w, err)
	}
	return nil
}
