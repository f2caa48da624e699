package activitystore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/activitystore/activitystore/internal/codec"
)

// Archive files: one per archived segment. ARCHIVE.md documents the format;
// keep the two in step.
const (
	// ArchiveFormat is the version of the archive file format this package
	// writes and reads.
	ArchiveFormat = 1

	archiveMagic   = "ACTSARC\x00"
	archiveHeader  = 16 // magic, version (u16), flags (u16), reserved (u32)
	archiveTrailer = 16 // footer CRC (u32), footer length (u32), magic

	// Limits a reader enforces before it allocates, so that no file can
	// make it use more memory than a legitimate archive would.
	maxBlockRaw   = 16 << 20 // decompressed bytes of one block
	maxBlockOut   = 64 << 20 // bytes of one block's records, reassembled
	maxIndexRaw   = 1 << 31  // decompressed bytes of the index section
	maxFooterSize = 64 << 20
	maxRatio      = 64 // largest decompressed/compressed ratio a reader accepts
)

var (
	zstdOnce     sync.Once
	zstdEnc      *zstd.Encoder
	zstdBlockDec *zstd.Decoder
	zstdIndexDec *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		// Sections carry their own CRC-32C: no frame checksums.
		zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only for invalid options
		}
		zstdBlockDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxBlockRaw), zstd.WithDecoderMaxWindow(maxBlockRaw), zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		zstdIndexDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxIndexRaw), zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
	})
	return zstdEnc, zstdBlockDec, zstdIndexDec
}

// section locates one compressed part of an archive file.
type section struct {
	off        int64
	clen, rlen uint64
	crc        uint32
	first      int // blocks: records in the blocks before this one
	count      int // blocks: records in this block
}

// archiveFooter is the parsed footer of an archive file.
type archiveFooter struct {
	window, width int64
	n             int
	index         section
	blocks        []section
}

// archiveCorrupt returns the corruption error for file name.
func archiveCorrupt(name string, format string, args ...any) error {
	return corruptf("archive "+name, format, args...)
}

// readFooter checks the header and trailer of an archive file of size bytes
// and parses its footer.
func readFooter(f io.ReaderAt, size int64, name string) (*archiveFooter, error) {
	if size < archiveHeader+archiveTrailer {
		return nil, archiveCorrupt(name, "%d bytes is too short for an archive", size)
	}
	var hdr [archiveHeader]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("activitystore: reading archive %s: %w", name, err)
	}
	if string(hdr[:8]) != archiveMagic {
		return nil, archiveCorrupt(name, "not an archive file (bad magic)")
	}
	if v := binary.BigEndian.Uint16(hdr[8:]); v != ArchiveFormat {
		return nil, archiveCorrupt(name, "archive format %d, this version reads %d", v, ArchiveFormat)
	}
	if string(hdr[10:]) != "\x00\x00\x00\x00\x00\x00" {
		return nil, archiveCorrupt(name, "unknown header flags")
	}
	var tr [archiveTrailer]byte
	if _, err := f.ReadAt(tr[:], size-archiveTrailer); err != nil {
		return nil, fmt.Errorf("activitystore: reading archive %s: %w", name, err)
	}
	if string(tr[8:]) != archiveMagic {
		return nil, archiveCorrupt(name, "truncated: no trailer")
	}
	flen := int64(binary.BigEndian.Uint32(tr[4:]))
	if flen > maxFooterSize || flen > size-archiveHeader-archiveTrailer {
		return nil, archiveCorrupt(name, "footer length %d does not fit the file", flen)
	}
	body := make([]byte, flen)
	if _, err := f.ReadAt(body, size-archiveTrailer-flen); err != nil {
		return nil, fmt.Errorf("activitystore: reading archive %s: %w", name, err)
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(tr[:4]) {
		return nil, archiveCorrupt(name, "footer checksum mismatch")
	}
	d := codec.Decoder{B: body}
	ft := &archiveFooter{}
	if v := d.Byte(); d.Err == nil && v != ArchiveFormat {
		return nil, archiveCorrupt(name, "footer version %d", v)
	}
	ft.window = int64(d.Uvarint())
	ft.width = int64(d.Uvarint())
	n := d.Uvarint()
	readSection := func(s *section) {
		s.clen = d.Uvarint()
		s.rlen = d.Uvarint()
		if c := d.Fixed(4); c != nil {
			s.crc = binary.BigEndian.Uint32(c)
		}
	}
	readSection(&ft.index)
	nb := d.Uvarint()
	if d.Err != nil || n >= 1<<32 || nb > n || nb > uint64(len(d.B)) || ft.window < 0 || ft.width <= 0 {
		return nil, archiveCorrupt(name, "malformed footer")
	}
	ft.n = int(n)
	off := int64(archiveHeader)
	first := 0
	ft.blocks = make([]section, nb)
	for i := range ft.blocks {
		b := &ft.blocks[i]
		cnt := d.Uvarint()
		readSection(b)
		if d.Err != nil || cnt == 0 || cnt > n-uint64(first) || b.rlen > maxBlockRaw || b.clen > uint64(size) || b.rlen > maxRatio*b.clen+1024 {
			return nil, archiveCorrupt(name, "block %d: malformed entry in the block index", i)
		}
		b.off, b.first, b.count = off, first, int(cnt)
		off += int64(b.clen)
		first += int(cnt)
	}
	ft.index.off = off
	if d.Err != nil || len(d.B) != 0 || first != ft.n {
		return nil, archiveCorrupt(name, "block index covers %d of %d activities", first, ft.n)
	}
	if ft.index.rlen > maxIndexRaw || ft.index.rlen > maxRatio*ft.index.clen+1024 || off+int64(ft.index.clen) != size-archiveTrailer-flen {
		return nil, archiveCorrupt(name, "sections do not add up to the file size")
	}
	return ft, nil
}

// readSection reads, checks and decompresses one section.
func readSection(f io.ReaderAt, s section, dec *zstd.Decoder, name, what string) ([]byte, error) {
	comp := make([]byte, s.clen)
	if _, err := f.ReadAt(comp, s.off); err != nil {
		return nil, fmt.Errorf("activitystore: reading archive %s: %w", name, err)
	}
	if crc32.Checksum(comp, crcTable) != s.crc {
		return nil, archiveCorrupt(name, "%s: checksum mismatch", what)
	}
	raw, err := decompressParts(comp, s.rlen, dec)
	if err != nil {
		return nil, archiveCorrupt(name, "%s: %v", what, err)
	}
	return raw, nil
}

// A section is stored as parts, each its own zstd frame, so that columns of
// different nature (random IDs, small numbers, text) get their own entropy
// tables:
//
//	nparts, then per part its compressed and raw length, then the frames
//
// maxParts bounds nparts.
const maxParts = 1 << 16

// minPart is the smallest raw part worth a frame of its own; smaller ones
// join the next.
const minPart = 512

// compressParts appends to dst the parts form of raw cut at cuts (ascending
// offsets into raw).
func compressParts(dst, raw []byte, cuts []int, enc *zstd.Encoder, scratch *[][]byte) []byte {
	var bounds []int
	last := 0
	for _, c := range cuts {
		if c-last >= minPart && len(raw)-c >= minPart {
			bounds = append(bounds, c)
			last = c
		}
	}
	bounds = append(bounds, len(raw))
	frames := (*scratch)[:0]
	start := 0
	for _, b := range bounds {
		var fr []byte
		if len(frames) < cap(frames) {
			fr = frames[:len(frames)+1][len(frames)][:0]
		}
		frames = append(frames, enc.EncodeAll(raw[start:b], fr))
		start = b
	}
	*scratch = frames
	dst = binary.AppendUvarint(dst, uint64(len(frames)))
	start = 0
	for i, fr := range frames {
		dst = binary.AppendUvarint(dst, uint64(len(fr)))
		dst = binary.AppendUvarint(dst, uint64(bounds[i]-start))
		start = bounds[i]
	}
	for _, fr := range frames {
		dst = append(dst, fr...)
	}
	return dst
}

// decompressParts inverts compressParts; the result must be rlen bytes.
func decompressParts(comp []byte, rlen uint64, dec *zstd.Decoder) ([]byte, error) {
	d := codec.Decoder{B: comp}
	n := d.Uvarint()
	if d.Err != nil || n == 0 || n > maxParts || n > uint64(len(d.B)) {
		return nil, errors.New("bad part count")
	}
	type part struct{ clen, rlen uint64 }
	parts := make([]part, n)
	var ctotal, rtotal uint64
	for i := range parts {
		parts[i] = part{d.Uvarint(), d.Uvarint()}
		ctotal += parts[i].clen
		rtotal += parts[i].rlen
		if d.Err != nil || ctotal > uint64(len(comp)) || rtotal > rlen {
			return nil, errors.New("bad part table")
		}
	}
	if ctotal != uint64(len(d.B)) || rtotal != rlen {
		return nil, errors.New("part table does not add up")
	}
	raw := make([]byte, 0, rlen)
	frames := d.B
	for _, p := range parts {
		// The decoders are limited to the capacity given: a frame cannot
		// make them allocate more than the part's recorded length.
		n := len(raw)
		out, err := dec.DecodeAll(frames[:p.clen], raw[n:n:n+int(p.rlen)])
		if err != nil {
			return nil, err
		}
		if uint64(len(out)) != p.rlen {
			return nil, fmt.Errorf("part of %d bytes decompressed to %d", p.rlen, len(out))
		}
		raw = append(raw, out...) // out already sits there: this only extends raw
		frames = frames[p.clen:]
	}
	return raw, nil
}

// arcIndex is the loaded index section of an archive: a sealed segment
// keyed by the store's value numbers, and the archive's own value tables
// that its blocks refer to.
type arcIndex struct {
	seg    *segment
	vals   [numFields][]string // archive value number -> value
	labels [numFields][]uint32 // ordinal -> archive value number
	size   int64               // approximate bytes held
}

// decodeIndex parses an index section: the ID column, then per field the
// values with their bitmaps.
func decodeIndex(raw []byte, ft *archiveFooter, dicts *[numFields]dict, name string) (*arcIndex, error) {
	d := codec.Decoder{B: raw}
	n := ft.n
	if uint64(n) > uint64(len(raw)) {
		return nil, archiveCorrupt(name, "index: %d activities in %d bytes", n, len(raw))
	}
	seg := newSegment(ft.window)
	seg.ids = make([]ID, n)
	lo := idFloor(ft.window * ft.width)
	hi := idFloor((ft.window + 1) * ft.width)
	if (ft.window+1)*ft.width < 0 {
		hi = maxID
	}
	var ns, seq uint64
	for i := range seg.ids {
		if i == 0 {
			ns, seq = d.Uvarint(), d.Uvarint()
		} else {
			ns += d.Uvarint()
			dz := d.Uvarint()
			seq += uint64(int64(dz>>1) ^ -int64(dz&1))
		}
		if d.Err != nil || ns > 1<<63-1 || seq > maxSeq {
			return nil, archiveCorrupt(name, "index: ID column entry %d is malformed", i)
		}
		id := makeID(int64(ns), seq)
		if !id.valid() || id.Compare(lo) < 0 || id.Compare(hi) >= 0 || (i > 0 && id.Compare(seg.ids[i-1]) <= 0) {
			return nil, archiveCorrupt(name, "index: ID column entry %d is out of order or outside window %d", i, ft.window)
		}
		seg.ids[i] = id
	}
	ix := &arcIndex{seg: seg, size: int64(16*n) + 4*int64(numFields)*int64(n) + int64(len(raw))}
	ords := make([]uint32, 0, n)
	var bms [numFields][]*roaring.Bitmap // by archive value number
	for f := range numFields {
		k := d.Uvarint()
		if d.Err != nil || k > uint64(len(d.B)) {
			return nil, archiveCorrupt(name, "index: field %s: bad value count", field(f))
		}
		labels := make([]uint32, n)
		for o := range labels {
			labels[o] = noValue
		}
		ix.labels[f] = labels
		ix.vals[f] = make([]string, k)
		seen := make(map[string]bool, k)
		for i := range k {
			v := d.Bytes()
			if d.Err != nil {
				return nil, archiveCorrupt(name, "index: field %s: %v", field(f), d.Err)
			}
			if seen[string(v)] {
				return nil, archiveCorrupt(name, "index: field %s: value %q twice", field(f), v)
			}
			seen[string(v)] = true
			ix.vals[f][i] = string(v)
		}
		counts := make([]uint64, k)
		var total uint64
		for i := range counts {
			counts[i] = d.Uvarint()
			total += counts[i]
			if d.Err != nil || counts[i] == 0 || total > uint64(n) {
				return nil, archiveCorrupt(name, "index: field %s: bad ordinal counts", field(f))
			}
		}
		if total != uint64(n) {
			return nil, archiveCorrupt(name, "index: field %s: %d ordinals for %d activities", field(f), total, n)
		}
		bms[f] = make([]*roaring.Bitmap, k)
		for i, c := range counts {
			ords = ords[:0]
			next := uint64(0) // smallest possible next ordinal
			for range c {
				o := next + d.Uvarint()
				if d.Err != nil || o >= uint64(n) || labels[o] != noValue {
					return nil, archiveCorrupt(name, "index: field %s: bad ordinal list of %q", field(f), ix.vals[f][i])
				}
				labels[o] = uint32(i)
				ords = append(ords, uint32(o))
				next = o + 1
			}
			bm := roaring.New()
			bm.AddMany(ords)
			bms[f][i] = bm
		}
	}
	if len(d.B) != 0 {
		return nil, archiveCorrupt(name, "index: %d trailing bytes", len(d.B))
	}
	// Only a sound index adds its values to the store's dictionaries.
	for f := range numFields {
		for i, v := range ix.vals[f] {
			vn := dicts[f].intern(v)
			seg.bms[f][vn] = bms[f][i]
			ix.vals[f][i] = dicts[f].value(vn)
		}
	}
	seg.sealed = true
	return ix, nil
}

// noValue marks an ordinal not yet given a value while an index loads.
const noValue = ^uint32(0)

// decodeBitmap decodes and validates a portable roaring bitmap of ordinals
// below n. It never panics on malformed input.
func decodeBitmap(data []byte, n int) (bm *roaring.Bitmap, err error) {
	defer func() {
		if r := recover(); r != nil {
			bm, err = nil, fmt.Errorf("bitmap: %v", r)
		}
	}()
	bm = roaring.New()
	if err := bm.UnmarshalBinary(data); err != nil {
		return nil, fmt.Errorf("bitmap: %w", err)
	}
	if err := bm.Validate(); err != nil {
		return nil, fmt.Errorf("bitmap: %w", err)
	}
	if bm.IsEmpty() || uint64(bm.Maximum()) >= uint64(n) {
		return nil, errors.New("bitmap holds ordinals outside the segment")
	}
	return bm, nil
}

// block is one decoded archive block: the records of count consecutive
// ordinals, newest first.
type block struct {
	buf []byte
	// off[2j]:off[2j+1] is the APICall of record j, off[2j+1]:off[2j+2] its
	// Details, in buf.
	off []uint32
}

func (b *block) size() int64 {
	return int64(len(b.buf)) + 4*int64(len(b.off)) + 64
}

// blockBuilder accumulates the records of one block in columns.
//
// Block layout (counts and numbers are uvarints):
//
//	count
//	apicall: a string column of count values
//	key table: nkeys, then nkeys strings
//	shape table: nshapes, then per shape: nk, nk key numbers
//	shape column: count shape numbers (0: details kept whole, s: shape s-1)
//	whole details: a string column, one value per shape-0 record
//	per key: a string column, one value per occurrence in the shapes
//
// The labels are not in the blocks: the index's bitmaps give them. A string
// column is a mode byte, then either (mode 0) the lengths and the bytes, or
// (mode 1) a table of distinct values (their count, then as mode 0) and one
// table number per value, or (mode 2) for values that are all JSON strings of
// lowercase hex digits, the lengths and bytes of the decoded binary. Details that are compact JSON objects are
// split by key, so that each key's values sit together in their own column,
// where they compress far better than in rows; rebuilding "{" +
// `"key":value` joined by "," + "}" gives back the exact bytes.
type blockBuilder struct {
	count    int
	bytes    int
	api      strCol
	keys     map[string]int
	keyList  []string
	shapes   map[string]int
	shapeDef [][]int
	shapeCol []byte
	raw      strCol
	keyCols  []strCol

	ks, vs   [][]byte
	shapeKey []byte
	shapeIdx []int
	distinct map[string]uint32
	cuts     []int // column boundaries of the last encode
}

// strCol gathers the values of one string column.
type strCol struct {
	data []byte
	off  []uint32 // value i is data[off[i]:off[i+1]]; off[0] is 0
}

func (c *strCol) add(v []byte) {
	if c.off == nil {
		c.off = append(c.off, 0)
	}
	c.data = append(c.data, v...)
	c.off = append(c.off, uint32(len(c.data)))
}

func (c *strCol) len() int { return max(len(c.off)-1, 0) }

func (c *strCol) reset() {
	c.data = c.data[:0]
	if c.off != nil {
		c.off = c.off[:1]
	}
}

// encode appends the column, as a table of distinct values when they are
// few.
// It adds to cuts the offsets in dst where the column's lengths end.
func (c *strCol) encode(dst []byte, distinct map[string]uint32, cuts *[]int) []byte {
	n := c.len()
	clear(distinct)
	var order []uint32 // table number per value
	if n >= 8 {
		order = make([]uint32, 0, n)
		for i := range n {
			v := c.data[c.off[i]:c.off[i+1]]
			k, ok := distinct[string(v)]
			if !ok {
				if len(distinct) >= n/4 {
					order = nil
					break
				}
				k = uint32(len(distinct))
				distinct[string(v)] = k
			}
			order = append(order, k)
		}
	}
	if order == nil && c.hex() {
		dst = append(dst, 2)
		for i := range n {
			dst = binary.AppendUvarint(dst, uint64(c.off[i+1]-c.off[i]-2)/2)
		}
		*cuts = append(*cuts, len(dst))
		for i := range n {
			v := c.data[c.off[i]+1 : c.off[i+1]-1]
			for j := 0; j < len(v); j += 2 {
				dst = append(dst, unhex(v[j])<<4|unhex(v[j+1]))
			}
		}
		return dst
	}
	if order == nil {
		dst = append(dst, 0)
		for i := range n {
			dst = binary.AppendUvarint(dst, uint64(c.off[i+1]-c.off[i]))
		}
		*cuts = append(*cuts, len(dst))
		return append(dst, c.data...)
	}
	dst = append(dst, 1)
	table := make([][]byte, len(distinct))
	for i, k := range order {
		if table[k] == nil {
			table[k] = c.data[c.off[i]:c.off[i+1]:c.off[i+1]]
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(table)))
	for _, v := range table {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
	}
	for _, v := range table {
		dst = append(dst, v...)
	}
	*cuts = append(*cuts, len(dst))
	for _, k := range order {
		dst = binary.AppendUvarint(dst, uint64(k))
	}
	return dst
}

// hex reports whether every value is a JSON string of an even number of
// lowercase hex digits.
func (c *strCol) hex() bool {
	n := c.len()
	if n == 0 {
		return false
	}
	for i := range n {
		v := c.data[c.off[i]:c.off[i+1]]
		if len(v) < 2 || len(v)%2 != 0 || v[0] != '"' || v[len(v)-1] != '"' {
			return false
		}
		for _, ch := range v[1 : len(v)-1] {
			if (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
				return false
			}
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

const hexDigits = "0123456789abcdef"

func (bb *blockBuilder) reset() {
	bb.count, bb.bytes = 0, 0
	bb.api.reset()
	clear(bb.keys)
	clear(bb.shapes)
	bb.keyList, bb.shapeDef = bb.keyList[:0], bb.shapeDef[:0]
	bb.shapeCol = bb.shapeCol[:0]
	bb.raw.reset()
	bb.keyCols = bb.keyCols[:0]
}

func (bb *blockBuilder) add(apicall string, details []byte) {
	if bb.keys == nil {
		bb.keys, bb.shapes, bb.distinct = map[string]int{}, map[string]int{}, map[string]uint32{}
	}
	bb.count++
	bb.bytes += len(apicall) + len(details) + 16
	bb.api.add(unsafe.Slice(unsafe.StringData(apicall), len(apicall)))
	var ok bool
	bb.ks, bb.vs, ok = splitObject(details, bb.ks[:0], bb.vs[:0])
	if !ok || len(bb.ks) == 0 || len(bb.ks) > maxShapeKeys {
		bb.shapeCol = append(bb.shapeCol, 0)
		bb.raw.add(details)
		return
	}
	bb.shapeKey, bb.shapeIdx = bb.shapeKey[:0], bb.shapeIdx[:0]
	for i, k := range bb.ks {
		ki, ok := bb.keys[string(k)]
		if !ok {
			ki = len(bb.keyList)
			bb.keys[string(k)] = ki
			bb.keyList = append(bb.keyList, string(k))
			if ki < len(bb.keyCols[:cap(bb.keyCols)]) {
				bb.keyCols = bb.keyCols[:ki+1]
				bb.keyCols[ki].reset()
			} else {
				bb.keyCols = append(bb.keyCols, strCol{})
			}
		}
		bb.shapeKey = binary.AppendUvarint(bb.shapeKey, uint64(ki))
		bb.shapeIdx = append(bb.shapeIdx, ki)
		bb.keyCols[ki].add(bb.vs[i])
	}
	si, ok := bb.shapes[string(bb.shapeKey)]
	if !ok {
		si = len(bb.shapeDef)
		bb.shapes[string(bb.shapeKey)] = si
		bb.shapeDef = append(bb.shapeDef, slices.Clone(bb.shapeIdx))
	}
	bb.shapeCol = binary.AppendUvarint(bb.shapeCol, uint64(si+1))
}

// maxShapeKeys is the most keys a split details object may have.
const maxShapeKeys = 64

// encode appends the block's raw (uncompressed) form to dst.
func (bb *blockBuilder) encode(dst []byte) []byte {
	if bb.distinct == nil {
		bb.distinct = map[string]uint32{}
	}
	bb.cuts = bb.cuts[:0]
	dst = binary.AppendUvarint(dst, uint64(bb.count))
	dst = bb.api.encode(dst, bb.distinct, &bb.cuts)
	bb.cuts = append(bb.cuts, len(dst))
	dst = binary.AppendUvarint(dst, uint64(len(bb.keyList)))
	for _, k := range bb.keyList {
		dst = codec.AppendString(dst, k)
	}
	dst = binary.AppendUvarint(dst, uint64(len(bb.shapeDef)))
	for _, sh := range bb.shapeDef {
		dst = binary.AppendUvarint(dst, uint64(len(sh)))
		for _, k := range sh {
			dst = binary.AppendUvarint(dst, uint64(k))
		}
	}
	dst = append(dst, bb.shapeCol...)
	bb.cuts = append(bb.cuts, len(dst))
	dst = bb.raw.encode(dst, bb.distinct, &bb.cuts)
	for k := range bb.keyList {
		bb.cuts = append(bb.cuts, len(dst))
		dst = bb.keyCols[k].encode(dst, bb.distinct, &bb.cuts)
	}
	return dst
}

// column is a decoded string column.
type column struct {
	data []byte
	off  []uint32 // value (or table entry) i is data[off[i]:off[i+1]]
	idx  []uint32 // table numbers, in table mode
	next int
}

// lenAt returns the length of value i.
func (c *column) lenAt(i int) int {
	if c.idx != nil {
		i = int(c.idx[i])
	}
	return int(c.off[i+1] - c.off[i])
}

// pop returns the column's next value.
func (c *column) pop() []byte {
	i := c.next
	c.next++
	if c.idx != nil {
		i = int(c.idx[i])
	}
	return c.data[c.off[i]:c.off[i+1]]
}

// decodeColumn reads a string column of n values of at most limit bytes.
func decodeColumn(d *codec.Decoder, n int, limit uint64) (column, error) {
	var c column
	mode := d.Byte()
	if mode == 2 {
		return decodeHexColumn(d, n, limit)
	}
	k := n
	if mode == 1 {
		t := d.Uvarint()
		if d.Err != nil || t > uint64(n) {
			return c, errors.New("bad table size")
		}
		k = int(t)
	} else if mode != 0 {
		return c, errors.New("bad column mode")
	}
	if d.Err != nil || k > len(d.B) {
		return c, errors.New("truncated column")
	}
	c.off = make([]uint32, k+1)
	var total uint64
	for j := range k {
		l := d.Uvarint()
		if d.Err != nil || l > limit {
			return c, errors.New("bad length")
		}
		total += l
		c.off[j+1] = uint32(total)
	}
	c.data = d.Fixed(int(min(total, uint64(len(d.B))+1)))
	if d.Err != nil {
		return c, errors.New("truncated column")
	}
	if mode == 1 {
		if n > len(d.B) {
			return c, errors.New("truncated column")
		}
		c.idx = make([]uint32, n)
		for j := range n {
			v := d.Uvarint()
			if d.Err != nil || v >= uint64(k) {
				return c, errors.New("bad table number")
			}
			c.idx[j] = uint32(v)
		}
	}
	return c, nil
}

// decodeHexColumn reads the rest of a mode-2 column, turning the binary
// back into quoted hex.
func decodeHexColumn(d *codec.Decoder, n int, limit uint64) (column, error) {
	var c column
	if d.Err != nil || n > len(d.B) {
		return c, errors.New("truncated column")
	}
	lens := make([]uint32, n)
	var total uint64
	for j := range n {
		l := d.Uvarint()
		if d.Err != nil || 2*l+2 > limit {
			return c, errors.New("bad length")
		}
		lens[j] = uint32(l)
		total += l
	}
	bin := d.Fixed(int(min(total, uint64(len(d.B))+1)))
	if d.Err != nil {
		return c, errors.New("truncated column")
	}
	c.data = make([]byte, 0, 2*len(bin)+2*n)
	c.off = make([]uint32, n+1)
	for j, l := range lens {
		c.data = append(c.data, '"')
		for _, b := range bin[:l] {
			c.data = append(c.data, hexDigits[b>>4], hexDigits[b&15])
		}
		c.data = append(c.data, '"')
		bin = bin[l:]
		c.off[j+1] = uint32(len(c.data))
	}
	return c, nil
}

// decodeBlock parses a block's raw form.
func decodeBlock(raw []byte, count int) (*block, error) {
	d := codec.Decoder{B: raw}
	if count <= 0 || count > len(raw) {
		return nil, fmt.Errorf("%d records cannot fit %d bytes", count, len(raw))
	}
	if c := d.Uvarint(); d.Err != nil || c != uint64(count) {
		return nil, fmt.Errorf("holds %d records, the block index says %d", c, count)
	}
	b := &block{off: make([]uint32, 2*count+1)}
	api, err := decodeColumn(&d, count, MaxAPICallBytes)
	if err != nil {
		return nil, fmt.Errorf("apicall: %w", err)
	}
	nk := d.Uvarint()
	if d.Err != nil || nk > uint64(len(d.B)) {
		return nil, errors.New("bad key table")
	}
	keys := make([][]byte, nk)
	for i := range keys {
		keys[i] = d.Bytes()
		if len(keys[i]) > MaxDetailsBytes {
			d.Err = codec.ErrShort
		}
	}
	ns := d.Uvarint()
	if d.Err != nil || ns > uint64(len(d.B)) {
		return nil, errors.New("bad shape table")
	}
	shapes := make([][]uint32, ns)
	for i := range shapes {
		k := d.Uvarint()
		if d.Err != nil || k > maxShapeKeys || k > uint64(len(d.B)) {
			return nil, errors.New("bad shape table")
		}
		shapes[i] = make([]uint32, k)
		for j := range shapes[i] {
			ki := d.Uvarint()
			if d.Err != nil || ki >= nk {
				return nil, errors.New("bad shape table")
			}
			shapes[i][j] = uint32(ki)
		}
	}
	shapeCol := make([]uint32, count)
	occ := make([]int, nk)
	nraw := 0
	for j := range shapeCol {
		s := d.Uvarint()
		if d.Err != nil || s > ns {
			return nil, errors.New("bad shape column")
		}
		shapeCol[j] = uint32(s)
		if s == 0 {
			nraw++
			continue
		}
		for _, k := range shapes[s-1] {
			occ[k]++
		}
	}
	rawCol, err := decodeColumn(&d, nraw, MaxDetailsBytes)
	if err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	kCols := make([]column, nk)
	for k := range kCols {
		if kCols[k], err = decodeColumn(&d, occ[k], MaxDetailsBytes); err != nil {
			return nil, fmt.Errorf("details key %d: %w", k, err)
		}
	}
	if len(d.B) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.B))
	}
	// Size the output exactly, then reassemble record by record.
	size := 0
	seen := make([]int, nk)
	rawSeen := 0
	for j := range count {
		size += api.lenAt(j)
		if sh := shapeCol[j]; sh == 0 {
			size += rawCol.lenAt(rawSeen)
			rawSeen++
		} else {
			size += 1 + len(shapes[sh-1])
			for _, k := range shapes[sh-1] {
				size += len(keys[k]) + 3 + kCols[k].lenAt(seen[k])
				seen[k]++
			}
		}
		if size > maxBlockOut {
			return nil, errors.New("reassembled records are too large")
		}
	}
	// Locals, not b's fields, in the loop: no write barriers per append.
	buf := make([]byte, 0, size)
	off := b.off
	for j := range count {
		off[2*j] = uint32(len(buf))
		buf = append(buf, api.pop()...)
		off[2*j+1] = uint32(len(buf))
		if s := shapeCol[j]; s == 0 {
			buf = append(buf, rawCol.pop()...)
		} else {
			buf = append(buf, '{')
			for i, k := range shapes[s-1] {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, '"')
				buf = append(buf, keys[k]...)
				buf = append(buf, '"', ':')
				buf = append(buf, kCols[k].pop()...)
			}
			buf = append(buf, '}')
		}
		if len(buf)-int(off[2*j+1]) > MaxDetailsBytes {
			return nil, fmt.Errorf("record %d: details over %d bytes", j, MaxDetailsBytes)
		}
	}
	off[2*count] = uint32(len(buf))
	b.buf = buf
	return b, nil
}

// splitObject splits a JSON object written without whitespace between its
// members, {"k":v,...}, into its keys (without quotes) and raw values. It
// reports false for anything else; the caller then keeps the bytes whole.
func splitObject(d []byte, keys, vals [][]byte) ([][]byte, [][]byte, bool) {
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' {
		return keys, vals, false
	}
	if len(d) == 2 {
		return keys, vals, true
	}
	i := 1
	for {
		if i >= len(d) || d[i] != '"' {
			return keys, vals, false
		}
		j := skipString(d, i)
		if j < 0 || j >= len(d) || d[j] != ':' {
			return keys, vals, false
		}
		k := skipValue(d, j+1)
		if k < 0 || k == j+1 {
			return keys, vals, false
		}
		keys = append(keys, d[i+1:j-1])
		vals = append(vals, d[j+1:k])
		if d[k] == '}' {
			return keys, vals, k == len(d)-1
		}
		i = k + 1
	}
}

// skipString returns the index after the JSON string starting at d[i], or
// -1.
func skipString(d []byte, i int) int {
	for j := i + 1; j < len(d); j++ {
		switch d[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index of the ',' or '}' that ends the JSON value
// starting at d[i], or -1.
func skipValue(d []byte, i int) int {
	depth := 0
	for j := i; j < len(d); j++ {
		switch d[j] {
		case '"':
			e := skipString(d, j)
			if e < 0 {
				return -1
			}
			j = e - 1
		case '{', '[':
			depth++
		case ']':
			depth--
			if depth < 0 {
				return -1
			}
		case '}':
			if depth == 0 {
				return j
			}
			depth--
		case ',':
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// archiveWriter writes one archive file from the activities of a window,
// given newest first. The number of activities is known up front, so each
// gets its final ordinal (ascending ID order) as it arrives.
type archiveWriter struct {
	blockBytes int // record bytes at which a block is closed
	f          *os.File
	bw         *bufio.Writer
	off        int64
	name       string
	window     int64
	width      int64
	lo, hi     ID
	n, j       int

	local [numFields]map[string]uint32
	vals  [numFields][]string
	ords  [numFields][][]uint32 // per archive value number, ordinals descending
	ids   []ID                  // newest first

	bb     blockBuilder
	raw    []byte
	comp   []byte
	frames [][]byte
	cuts   []int
	blocks []section
	first  int
}

func newArchiveWriter(f *os.File, name string, window, width int64, n, blockBytes int) (*archiveWriter, error) {
	w := &archiveWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20), name: name, window: window, width: width, n: n, blockBytes: blockBytes}
	w.lo = idFloor(window * width)
	w.hi = idFloor((window + 1) * width)
	if (window+1)*width < 0 {
		w.hi = maxID
	}
	for f := range w.local {
		w.local[f] = map[string]uint32{}
	}
	w.ids = make([]ID, 0, n)
	var hdr [archiveHeader]byte
	copy(hdr[:], archiveMagic)
	binary.BigEndian.PutUint16(hdr[8:], ArchiveFormat)
	if _, err := w.bw.Write(hdr[:]); err != nil {
		return nil, err
	}
	w.off = archiveHeader
	return w, nil
}

// add appends the next activity, whose ID must be below the previous one.
func (w *archiveWriter) add(a *Activity) error {
	if w.j >= w.n {
		return fmt.Errorf("archive %s: more than the %d activities expected", w.name, w.n)
	}
	if a.ID.Compare(w.lo) < 0 || a.ID.Compare(w.hi) >= 0 || (len(w.ids) > 0 && a.ID.Compare(w.ids[len(w.ids)-1]) >= 0) {
		return fmt.Errorf("archive %s: activity %s out of order or outside window %d", w.name, a.ID, w.window)
	}
	o := uint32(w.n - 1 - w.j)
	w.j++
	w.ids = append(w.ids, a.ID)
	for f, l := range a.labels() {
		v, ok := w.local[f][l]
		if !ok {
			l = strings.Clone(l) // l may alias an iterator's buffer
			v = uint32(len(w.vals[f]))
			w.local[f][l] = v
			w.vals[f] = append(w.vals[f], l)
			w.ords[f] = append(w.ords[f], nil)
		}
		w.ords[f][v] = append(w.ords[f][v], o)
	}
	w.bb.add(a.APICall, a.Details)
	if w.bb.bytes >= w.blockBytes {
		return w.flushBlock()
	}
	return nil
}

// writeSection compresses raw, writes it and returns where it went.
func (w *archiveWriter) writeSection(raw []byte, cuts []int) (section, error) {
	enc, _, _ := zstdCodecs()
	w.comp = compressParts(w.comp[:0], raw, cuts, enc, &w.frames)
	s := section{off: w.off, clen: uint64(len(w.comp)), rlen: uint64(len(raw)), crc: crc32.Checksum(w.comp, crcTable)}
	if _, err := w.bw.Write(w.comp); err != nil {
		return s, err
	}
	w.off += int64(len(w.comp))
	return s, nil
}

func (w *archiveWriter) flushBlock() error {
	if w.bb.count == 0 {
		return nil
	}
	w.raw = w.bb.encode(w.raw[:0])
	s, err := w.writeSection(w.raw, w.bb.cuts)
	if err != nil {
		return err
	}
	s.first, s.count = w.first, w.bb.count
	w.first += w.bb.count
	w.blocks = append(w.blocks, s)
	w.bb.reset()
	return nil
}

// finish writes the index section and the footer, and syncs the file.
func (w *archiveWriter) finish() error {
	if w.j != w.n {
		return fmt.Errorf("archive %s: got %d of %d activities", w.name, w.j, w.n)
	}
	if err := w.flushBlock(); err != nil {
		return err
	}
	// Index section: the ID column ascending, then the bitmaps.
	raw := w.raw[:0]
	var pns int64
	var pseq uint64
	for i := len(w.ids) - 1; i >= 0; i-- {
		id := w.ids[i]
		ns, seq := id.UnixNano(), id.seq()
		if i == len(w.ids)-1 {
			raw = binary.AppendUvarint(raw, uint64(ns))
			raw = binary.AppendUvarint(raw, seq)
		} else {
			raw = binary.AppendUvarint(raw, uint64(ns-pns))
			ds := int64(seq - pseq)
			raw = binary.AppendUvarint(raw, uint64(ds<<1^(ds>>63)))
		}
		pns, pseq = ns, seq
	}
	// Per field: the values, the number of ordinals of each, then each
	// value's ordinals ascending as gaps: a bitmap per value, in a form
	// that compresses to about the entropy of the labels.
	w.cuts = w.cuts[:0]
	for f := range numFields {
		w.cuts = append(w.cuts, len(raw))
		raw = binary.AppendUvarint(raw, uint64(len(w.vals[f])))
		for _, val := range w.vals[f] {
			raw = codec.AppendString(raw, val)
		}
		w.cuts = append(w.cuts, len(raw))
		for v := range w.vals[f] {
			raw = binary.AppendUvarint(raw, uint64(len(w.ords[f][v])))
		}
		w.cuts = append(w.cuts, len(raw))
		for v := range w.vals[f] {
			ords := w.ords[f][v] // descending
			next := uint32(0)
			for i := len(ords) - 1; i >= 0; i-- {
				raw = binary.AppendUvarint(raw, uint64(ords[i]-next))
				next = ords[i] + 1
			}
		}
	}
	w.raw = raw
	ix, err := w.writeSection(raw, w.cuts)
	if err != nil {
		return err
	}
	// Footer.
	ft := []byte{ArchiveFormat}
	ft = binary.AppendUvarint(ft, uint64(w.window))
	ft = binary.AppendUvarint(ft, uint64(w.width))
	ft = binary.AppendUvarint(ft, uint64(w.n))
	appendSection := func(b []byte, s section) []byte {
		b = binary.AppendUvarint(b, s.clen)
		b = binary.AppendUvarint(b, s.rlen)
		return binary.BigEndian.AppendUint32(b, s.crc)
	}
	ft = appendSection(ft, ix)
	ft = binary.AppendUvarint(ft, uint64(len(w.blocks)))
	for _, b := range w.blocks {
		ft = binary.AppendUvarint(ft, uint64(b.count))
		ft = appendSection(ft, b)
	}
	ft = binary.BigEndian.AppendUint32(ft, crc32.Checksum(ft[:len(ft)], crcTable))
	body := len(ft) - 4
	// Trailer: CRC (already appended), footer length, magic.
	ft = binary.BigEndian.AppendUint32(ft, uint32(body))
	ft = append(ft, archiveMagic...)
	if _, err := w.bw.Write(ft); err != nil {
		return err
	}
	w.off += int64(len(ft))
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.f.Sync()
}

// label returns the value of field f of ordinal o.
func (ix *arcIndex) label(f field, o int) string { return ix.vals[f][ix.labels[f][o]] }

// fill sets a to the activity of ordinal o, with its APICall and Details
// from a block; a keeps apicall's and details' memory.
func (ix *arcIndex) fill(a *Activity, o int, apicall, details []byte) {
	id := ix.seg.ids[o]
	*a = Activity{
		ID: id, Time: id.Time(),
		Type:     ix.label(fieldType, o),
		UserID:   ix.label(fieldUser, o),
		Module:   ix.label(fieldModule, o),
		Action:   ix.label(fieldAction, o),
		Resource: ix.label(fieldResource, o),
		APICall:  str(apicall),
	}
	if len(details) > 0 {
		a.Details = details
	}
}
