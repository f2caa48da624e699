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
	"sync"

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

// archiveBlockBytes is the record bytes (as JSON details plus labels) at
// which a block is closed. Tests lower it to get many blocks.
var archiveBlockBytes = 256 << 10

var (
	zstdOnce     sync.Once
	zstdEnc      *zstd.Encoder
	zstdBlockDec *zstd.Decoder
	zstdIndexDec *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only for invalid options
		}
		zstdBlockDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxBlockRaw), zstd.WithDecoderMaxWindow(maxBlockRaw), zstd.WithDecoderConcurrency(0))
		if err != nil {
			panic(err)
		}
		zstdIndexDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxIndexRaw), zstd.WithDecoderConcurrency(0))
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
	raw, err := dec.DecodeAll(comp, make([]byte, 0, s.rlen))
	if err != nil {
		return nil, archiveCorrupt(name, "%s: %v", what, err)
	}
	if uint64(len(raw)) != s.rlen {
		return nil, archiveCorrupt(name, "%s: %d bytes decompressed, %d expected", what, len(raw), s.rlen)
	}
	return raw, nil
}

// arcIndex is the loaded index section of an archive: a sealed segment
// keyed by the store's value numbers, and the archive's own value tables
// that its blocks refer to.
type arcIndex struct {
	seg  *segment
	vals [numFields][]string // archive value number -> value
	size int64               // approximate bytes held
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
	ix := &arcIndex{seg: seg, size: int64(16*n) + int64(len(raw))}
	for f := range numFields {
		k := d.Uvarint()
		if d.Err != nil || k > uint64(len(d.B)) {
			return nil, archiveCorrupt(name, "index: field %s: bad value count", field(f))
		}
		var total uint64
		ix.vals[f] = make([]string, 0, k)
		for range k {
			v := d.Bytes()
			data := d.Bytes()
			if d.Err != nil {
				return nil, archiveCorrupt(name, "index: field %s: %v", field(f), d.Err)
			}
			bm, err := decodeBitmap(data, n)
			if err != nil {
				return nil, archiveCorrupt(name, "index: field %s: %v", field(f), err)
			}
			vn := dicts[f].intern(string(v))
			if seg.bms[f][vn] != nil {
				return nil, archiveCorrupt(name, "index: field %s: value %q twice", field(f), v)
			}
			seg.bms[f][vn] = bm
			ix.vals[f] = append(ix.vals[f], dicts[f].value(vn))
			total += bm.GetCardinality()
		}
		if total != uint64(n) {
			return nil, archiveCorrupt(name, "index: field %s: bitmaps hold %d ordinals for %d activities", field(f), total, n)
		}
	}
	if len(d.B) != 0 {
		return nil, archiveCorrupt(name, "index: %d trailing bytes", len(d.B))
	}
	seg.sealed = true
	return ix, nil
}

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
	labels [numFields][]uint32 // archive value numbers, by position
	buf    []byte
	// off[2j]:off[2j+1] is the APICall of record j, off[2j+1]:off[2j+2] its
	// Details, in buf.
	off []uint32
}

func (b *block) size() int64 {
	return int64(len(b.buf)) + 4*int64(len(b.off)) + 4*int64(numFields)*int64(len(b.labels[0])) + 64
}

// blockBuilder accumulates the records of one block in columns.
//
// Block layout (all counts uvarint; "lens" columns are uvarints):
//
//	count
//	per field: count archive value numbers
//	apicall lens (count), apicall bytes
//	key table: nkeys, then nkeys strings
//	shape table: nshapes, then per shape: nk, nk key numbers
//	shape column: count shape numbers (0: details kept whole, s: shape s-1)
//	whole details: lens (one per shape-0 record), bytes
//	per key: lens (one per occurrence), bytes
//
// Details that are compact JSON objects are split by key: each key's values
// sit together in their own column, where they compress far better than in
// rows. Rebuilding "{" + `"key":value` joined by "," + "}" gives back the
// exact bytes.
type blockBuilder struct {
	count    int
	bytes    int
	labels   [numFields][]byte
	apiLens  []byte
	apiData  []byte
	keys     map[string]int
	keyList  []string
	shapes   map[string]int
	shapeDef [][]int
	shapeCol []byte
	rawLens  []byte
	rawData  []byte
	keyLens  [][]byte
	keyData  [][]byte

	ks, vs   [][]byte
	shapeKey []byte
	shapeIdx []int
}

func (bb *blockBuilder) reset() {
	bb.count, bb.bytes = 0, 0
	for f := range bb.labels {
		bb.labels[f] = bb.labels[f][:0]
	}
	bb.apiLens, bb.apiData = bb.apiLens[:0], bb.apiData[:0]
	clear(bb.keys)
	clear(bb.shapes)
	bb.keyList, bb.shapeDef = bb.keyList[:0], bb.shapeDef[:0]
	bb.shapeCol, bb.rawLens, bb.rawData = bb.shapeCol[:0], bb.rawLens[:0], bb.rawData[:0]
	bb.keyLens, bb.keyData = bb.keyLens[:0], bb.keyData[:0]
}

func (bb *blockBuilder) add(local *[numFields]uint32, apicall string, details []byte) {
	if bb.keys == nil {
		bb.keys, bb.shapes = map[string]int{}, map[string]int{}
	}
	bb.count++
	bb.bytes += len(apicall) + len(details) + 16
	for f := range numFields {
		bb.labels[f] = binary.AppendUvarint(bb.labels[f], uint64(local[f]))
	}
	bb.apiLens = binary.AppendUvarint(bb.apiLens, uint64(len(apicall)))
	bb.apiData = append(bb.apiData, apicall...)
	var ok bool
	bb.ks, bb.vs, ok = splitObject(details, bb.ks[:0], bb.vs[:0])
	if !ok || len(bb.ks) == 0 || len(bb.ks) > 64 {
		bb.shapeCol = append(bb.shapeCol, 0)
		bb.rawLens = binary.AppendUvarint(bb.rawLens, uint64(len(details)))
		bb.rawData = append(bb.rawData, details...)
		return
	}
	bb.shapeKey, bb.shapeIdx = bb.shapeKey[:0], bb.shapeIdx[:0]
	for i, k := range bb.ks {
		ki, ok := bb.keys[string(k)]
		if !ok {
			ki = len(bb.keyList)
			bb.keys[string(k)] = ki
			bb.keyList = append(bb.keyList, string(k))
			bb.keyLens = append(bb.keyLens, nil)
			bb.keyData = append(bb.keyData, nil)
		}
		bb.shapeKey = binary.AppendUvarint(bb.shapeKey, uint64(ki))
		bb.shapeIdx = append(bb.shapeIdx, ki)
		bb.keyLens[ki] = binary.AppendUvarint(bb.keyLens[ki], uint64(len(bb.vs[i])))
		bb.keyData[ki] = append(bb.keyData[ki], bb.vs[i]...)
	}
	si, ok := bb.shapes[string(bb.shapeKey)]
	if !ok {
		si = len(bb.shapeDef)
		bb.shapes[string(bb.shapeKey)] = si
		bb.shapeDef = append(bb.shapeDef, slices.Clone(bb.shapeIdx))
	}
	bb.shapeCol = binary.AppendUvarint(bb.shapeCol, uint64(si+1))
}

// encode appends the block's raw (uncompressed) form to dst.
func (bb *blockBuilder) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(bb.count))
	for f := range numFields {
		dst = append(dst, bb.labels[f]...)
	}
	dst = append(dst, bb.apiLens...)
	dst = append(dst, bb.apiData...)
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
	dst = append(dst, bb.rawLens...)
	dst = append(dst, bb.rawData...)
	for k := range bb.keyList {
		dst = append(dst, bb.keyLens[k]...)
		dst = append(dst, bb.keyData[k]...)
	}
	return dst
}

// decodeBlock parses a block's raw form. nvals bounds the archive value
// numbers per field.
func decodeBlock(raw []byte, count int, nvals *[numFields]int) (*block, error) {
	d := codec.Decoder{B: raw}
	if count <= 0 || count > len(raw) {
		return nil, fmt.Errorf("%d records cannot fit %d bytes", count, len(raw))
	}
	if c := d.Uvarint(); d.Err != nil || c != uint64(count) {
		return nil, fmt.Errorf("holds %d records, the block index says %d", c, count)
	}
	b := &block{off: make([]uint32, 2*count+1)}
	for f := range numFields {
		b.labels[f] = make([]uint32, count)
		for j := range count {
			v := d.Uvarint()
			if d.Err != nil || v >= uint64(nvals[f]) {
				return nil, fmt.Errorf("record %d: bad %s value number", j, field(f))
			}
			b.labels[f][j] = uint32(v)
		}
	}
	lens := func(k int, limit uint64) ([]uint32, []byte, error) {
		ls := make([]uint32, k)
		var total uint64
		for j := range ls {
			l := d.Uvarint()
			if d.Err != nil || l > limit {
				return nil, nil, errors.New("bad length column")
			}
			ls[j] = uint32(l)
			total += l
		}
		data := d.Fixed(int(min(total, uint64(len(d.B))+1)))
		if d.Err != nil {
			return nil, nil, errors.New("truncated data column")
		}
		return ls, data, nil
	}
	apiLens, apiData, err := lens(count, MaxAPICallBytes)
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
		if d.Err != nil || k > 64 {
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
	rawLens, rawData, err := lens(nraw, MaxDetailsBytes)
	if err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	kLens := make([][]uint32, nk)
	kData := make([][]byte, nk)
	for k := range kLens {
		if kLens[k], kData[k], err = lens(occ[k], MaxDetailsBytes); err != nil {
			return nil, fmt.Errorf("details key %d: %w", k, err)
		}
	}
	if len(d.B) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.B))
	}
	// Reassemble record by record.
	b.buf = make([]byte, 0, len(raw)+len(raw)/2)
	kPos := make([]int, nk)
	kOff := make([]int, nk)
	rawPos, rawOff, apiOff := 0, 0, 0
	for j := range count {
		if len(b.buf) > maxBlockOut {
			return nil, errors.New("reassembled records are too large")
		}
		b.off[2*j] = uint32(len(b.buf))
		b.buf = append(b.buf, apiData[apiOff:apiOff+int(apiLens[j])]...)
		apiOff += int(apiLens[j])
		b.off[2*j+1] = uint32(len(b.buf))
		start := len(b.buf)
		if s := shapeCol[j]; s == 0 {
			l := int(rawLens[rawPos])
			b.buf = append(b.buf, rawData[rawOff:rawOff+l]...)
			rawPos++
			rawOff += l
		} else {
			b.buf = append(b.buf, '{')
			for i, k := range shapes[s-1] {
				if i > 0 {
					b.buf = append(b.buf, ',')
				}
				b.buf = append(b.buf, '"')
				b.buf = append(b.buf, keys[k]...)
				b.buf = append(b.buf, '"', ':')
				l := int(kLens[k][kPos[k]])
				b.buf = append(b.buf, kData[k][kOff[k]:kOff[k]+l]...)
				kPos[k]++
				kOff[k] += l
			}
			b.buf = append(b.buf, '}')
		}
		if len(b.buf)-start > MaxDetailsBytes {
			return nil, fmt.Errorf("record %d: details over %d bytes", j, MaxDetailsBytes)
		}
	}
	b.off[2*count] = uint32(len(b.buf))
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
	f      *os.File
	bw     *bufio.Writer
	off    int64
	name   string
	window int64
	width  int64
	lo, hi ID
	n, j   int

	local [numFields]map[string]uint32
	vals  [numFields][]string
	ords  [numFields][][]uint32 // per archive value number, ordinals descending
	ids   []ID                  // newest first

	bb     blockBuilder
	raw    []byte
	comp   []byte
	blocks []section
	first  int
}

func newArchiveWriter(f *os.File, name string, window, width int64, n int) (*archiveWriter, error) {
	w := &archiveWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20), name: name, window: window, width: width, n: n}
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
	var local [numFields]uint32
	for f, l := range a.labels() {
		v, ok := w.local[f][l]
		if !ok {
			v = uint32(len(w.vals[f]))
			w.local[f][l] = v
			w.vals[f] = append(w.vals[f], l)
			w.ords[f] = append(w.ords[f], nil)
		}
		local[f] = v
		w.ords[f][v] = append(w.ords[f][v], o)
	}
	w.bb.add(&local, a.APICall, a.Details)
	if w.bb.bytes >= archiveBlockBytes {
		return w.flushBlock()
	}
	return nil
}

// writeSection compresses raw, writes it and returns where it went.
func (w *archiveWriter) writeSection(raw []byte) (section, error) {
	enc, _, _ := zstdCodecs()
	w.comp = enc.EncodeAll(raw, w.comp[:0])
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
	s, err := w.writeSection(w.raw)
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
	for f := range numFields {
		raw = binary.AppendUvarint(raw, uint64(len(w.vals[f])))
		for v, val := range w.vals[f] {
			ords := w.ords[f][v]
			slices.Reverse(ords)
			bm := roaring.New()
			bm.AddMany(ords)
			bm.RunOptimize()
			data, err := bm.ToBytes()
			if err != nil {
				return err
			}
			raw = codec.AppendString(raw, val)
			raw = codec.AppendBytes(raw, data)
		}
	}
	w.raw = raw
	ix, err := w.writeSection(raw)
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
