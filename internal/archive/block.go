package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/activitystore/activitystore/internal/codec"
)

// Limits of one record, the same as the store's MaxAPICallBytes and
// MaxDetailsBytes: a block holding a longer value is corrupt.
const (
	MaxAPICall = 1024     // bytes of one API call
	MaxDetails = 64 << 10 // bytes of one record's details
)

// Block is one decoded block: the records of consecutive ordinals, newest
// first.
type Block struct {
	buf []byte
	// off[2j]:off[2j+1] is the APICall of record j, off[2j+1]:off[2j+2] its
	// Details, in buf.
	off []uint32
	// Rows are, in a copy block of format 3, each record's ordinal, ID and
	// labels; nil otherwise.
	Rows *CopyRows
}

// Len returns the number of records.
func (b *Block) Len() int { return len(b.off) / 2 }

// Record returns the API call and the details of record j, the j-th newest
// of the block. They alias the block, which never changes them: they stay
// valid as long as the caller keeps them.
func (b *Block) Record(j int) (apicall, details []byte) {
	s, m, e := b.off[2*j], b.off[2*j+1], b.off[2*j+2]
	return b.buf[s:m:m], b.buf[m:e:e]
}

// Size returns the approximate bytes the block holds, for caches.
func (b *Block) Size() int64 {
	return int64(len(b.buf)) + 4*int64(len(b.off)) + 64
}

// BlockBuilder accumulates the records of one block in columns. The zero
// value is empty and ready to use.
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
// lowercase hex digits, the lengths and bytes of the decoded binary. Details
// that are compact JSON objects are split by key, so that each key's values
// sit together in their own column, where they compress far better than in
// rows; rebuilding "{" + `"key":value` joined by "," + "}" gives back the
// exact bytes.
type BlockBuilder struct {
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

// Len returns the number of records added since the last Reset.
func (bb *BlockBuilder) Len() int { return bb.count }

// Size returns the bytes of the records added since the last Reset, plus 16
// per record: what a writer compares against its block size.
func (bb *BlockBuilder) Size() int { return bb.bytes }

// Cuts returns the offsets in the last Encode's output where the columns'
// lengths and bytes end, for CompressParts. It is valid until the next
// Encode.
func (bb *BlockBuilder) Cuts() []int { return bb.cuts }

// Reset empties the builder, keeping its memory.
func (bb *BlockBuilder) Reset() {
	bb.count, bb.bytes = 0, 0
	bb.api.reset()
	clear(bb.keys)
	clear(bb.shapes)
	bb.keyList, bb.shapeDef = bb.keyList[:0], bb.shapeDef[:0]
	bb.shapeCol = bb.shapeCol[:0]
	bb.raw.reset()
	bb.keyCols = bb.keyCols[:0]
}

// Add appends a record. It keeps neither apicall nor details.
func (bb *BlockBuilder) Add(apicall string, details []byte) {
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

// Encode appends the block's raw (uncompressed) form to dst.
func (bb *BlockBuilder) Encode(dst []byte) []byte {
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

// at returns value i.
func (c *column) at(i int) []byte {
	if c.idx != nil {
		i = int(c.idx[i])
	}
	return c.data[c.off[i]:c.off[i+1]:c.off[i+1]]
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

// decodeBlock parses a block's raw form holding count records.
func decodeBlock(raw []byte, count int) (*Block, error) { return decodeBlockRows(raw, count, false) }

// decodeBlockRows parses a block's raw form holding count records, followed
// by their copy rows if rows.
func decodeBlockRows(raw []byte, count int, rows bool) (*Block, error) {
	d := codec.Decoder{B: raw}
	if count <= 0 || count > len(raw) {
		return nil, fmt.Errorf("%d records cannot fit %d bytes", count, len(raw))
	}
	if c := d.Uvarint(); d.Err != nil || c != uint64(count) {
		return nil, fmt.Errorf("holds %d records, the block index says %d", c, count)
	}
	b := &Block{off: make([]uint32, 2*count+1)}
	api, err := decodeColumn(&d, count, MaxAPICall)
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
		if len(keys[i]) > MaxDetails {
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
	rawCol, err := decodeColumn(&d, nraw, MaxDetails)
	if err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	kCols := make([]column, nk)
	for k := range kCols {
		if kCols[k], err = decodeColumn(&d, occ[k], MaxDetails); err != nil {
			return nil, fmt.Errorf("details key %d: %w", k, err)
		}
	}
	if rows {
		if b.Rows, err = decodeCopyRows(&d, count); err != nil {
			return nil, err
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
		if len(buf)-int(off[2*j+1]) > MaxDetails {
			return nil, fmt.Errorf("record %d: details over %d bytes", j, MaxDetails)
		}
	}
	off[2*count] = uint32(len(buf))
	b.buf = buf
	return b, nil
}
