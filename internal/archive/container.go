package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/activitystore/activitystore/internal/codec"
)

// Format is the version of the archive file format this package writes. It
// reads it and every version from MinFormat on, and refuses any other.
// Version 2 added the copy blocks; version 3 split the index into parts a
// reader loads one at a time (see parts.go).
const Format = 3

// MinFormat is the oldest version a reader reads.
const MinFormat = 1

const (
	magic = "ACTSARC\x00"

	// HeaderSize is the length of the header: magic, version (u16), flags
	// (u16), reserved (u32).
	HeaderSize = 16
	// TrailerSize is the length of the trailer: footer CRC (u32), footer
	// length (u32), magic.
	TrailerSize = 16

	// Limits a reader enforces before it allocates, so that no file can
	// make it use more memory than a legitimate archive would.
	maxBlockRaw   = 16 << 20 // decompressed bytes of one block
	maxBlockOut   = 64 << 20 // bytes of one block's records, reassembled
	maxIndexRaw   = 1 << 31  // decompressed bytes of the index section
	maxFooterSize = 64 << 20
	// maxRatio is the largest decompressed/compressed ratio a reader
	// accepts for an index section of more than ratioFree bytes. Below that
	// any ratio goes: activities that differ only in their time compress
	// far beyond 64x, and ratioFree bounds the memory a small file can make
	// a reader allocate. A block needs no ratio: maxBlockRaw bounds it.
	maxRatio  = 64
	ratioFree = 64 << 20
)

// CorruptError reports bytes that are not a well-formed archive: a bad
// magic or checksum, a length over a limit, a malformed section. Its
// message does not name the file.
type CorruptError struct {
	msg string
}

func (e *CorruptError) Error() string { return e.msg }

func corruptf(format string, args ...any) error {
	return &CorruptError{msg: fmt.Sprintf(format, args...)}
}

// crcTable is CRC-32C (Castagnoli), the checksum of sections and footer.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

var (
	zstdOnce     sync.Once
	zstdEnc      *zstd.Encoder
	zstdBlockDec *zstd.Decoder
	zstdIndexDec *zstd.Decoder
)

// zstdCodecs returns the shared encoder and the decoders of blocks and of
// index sections, each bounded by its section's raw limit.
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

// Encoder returns the zstd encoder sections are compressed with: default
// level, no frame checksum. Its EncodeAll is safe for concurrent use.
func Encoder() *zstd.Encoder {
	enc, _, _ := zstdCodecs()
	return enc
}

// Section locates one compressed part of an archive file: a block, a copy
// block or the index.
type Section struct {
	Off  int64  // offset in the file
	CLen uint64 // compressed length
	RLen uint64 // raw (decompressed) length
	CRC  uint32 // CRC-32C of the compressed bytes

	First int // blocks: records in the blocks before this one
	Count int // blocks: records in this block
}

// Footer is the parsed footer of an archive file.
type Footer struct {
	Format int       // the file's format version
	Window int64     // window number
	Width  int64     // window width in nanoseconds
	N      int       // activities in the file
	Index  Section   // formats 1 and 2: the whole index
	Blocks []Section // newest records first
	// Copies are the copy blocks (format 2): copies of the records of the
	// users with few activities in the file, each user's together, newest
	// first; Index.CopyAt says where.
	Copies []Section

	// Format 3: the index in parts (see parts.go).
	Chunk  int                // ordinals per chunk
	Head   Section            // first ID of each chunk, the last ID, counts of the small fields
	Dirs   [NumFields]Section // per field: its values, with where their ordinals are
	Groups []Section          // the ordinal lists of the values
	Chunks []Section          // per chunk: IDs, value numbers and copy positions of its ordinals
}

// ReadFooter checks the header and trailer of an archive file of size bytes
// and parses its footer. Corrupt bytes give a *CorruptError; read errors
// are returned as they are.
func ReadFooter(f io.ReaderAt, size int64) (*Footer, error) {
	if size < HeaderSize+TrailerSize {
		return nil, corruptf("%d bytes is too short for an archive", size)
	}
	var hdr [HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, err
	}
	if string(hdr[:8]) != magic {
		return nil, corruptf("not an archive file (bad magic)")
	}
	version := int(binary.BigEndian.Uint16(hdr[8:]))
	if version < MinFormat || version > Format {
		return nil, corruptf("archive format %d, this version reads %d to %d", version, MinFormat, Format)
	}
	if string(hdr[10:]) != "\x00\x00\x00\x00\x00\x00" {
		return nil, corruptf("unknown header flags")
	}
	var tr [TrailerSize]byte
	if _, err := f.ReadAt(tr[:], size-TrailerSize); err != nil {
		return nil, err
	}
	if string(tr[8:]) != magic {
		return nil, corruptf("truncated: no trailer")
	}
	flen := int64(binary.BigEndian.Uint32(tr[4:]))
	if flen > maxFooterSize || flen > size-HeaderSize-TrailerSize {
		return nil, corruptf("footer length %d does not fit the file", flen)
	}
	body := make([]byte, flen)
	if _, err := f.ReadAt(body, size-TrailerSize-flen); err != nil {
		return nil, err
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(tr[:4]) {
		return nil, corruptf("footer checksum mismatch")
	}
	d := codec.Decoder{B: body}
	ft := &Footer{Format: version}
	if v := d.Byte(); d.Err == nil && int(v) != version {
		return nil, corruptf("footer version %d in a file of format %d", v, version)
	}
	ft.Window = int64(d.Uvarint())
	ft.Width = int64(d.Uvarint())
	n := d.Uvarint()
	readSection := func(s *Section) {
		s.CLen = d.Uvarint()
		s.RLen = d.Uvarint()
		if c := d.Fixed(4); c != nil {
			s.CRC = binary.BigEndian.Uint32(c)
		}
	}
	var chunk uint64
	if version >= 3 {
		chunk = d.Uvarint()
		readSection(&ft.Head)
		for f := range ft.Dirs {
			readSection(&ft.Dirs[f])
		}
		if d.Err != nil || chunk < minChunk || chunk > maxChunk {
			return nil, corruptf("malformed footer: chunk size")
		}
		ft.Chunk = int(chunk)
	} else {
		readSection(&ft.Index)
	}
	nb := d.Uvarint()
	if d.Err != nil || n >= 1<<32 || nb > n || nb > uint64(len(d.B)) || ft.Window < 0 || ft.Width <= 0 {
		return nil, corruptf("malformed footer")
	}
	ft.N = int(n)
	off := int64(HeaderSize)
	// readBlocks reads k entries of a block list; what names them in errors.
	readBlocks := func(k uint64, what string) ([]Section, int, error) {
		first := 0
		bs := make([]Section, k)
		for i := range bs {
			b := &bs[i]
			cnt := d.Uvarint()
			readSection(b)
			if d.Err != nil || cnt == 0 || cnt > n-uint64(first) || b.RLen > maxBlockRaw || b.CLen > uint64(size) {
				return nil, 0, corruptf("%s %d: malformed entry in the block index", what, i)
			}
			b.Off, b.First, b.Count = off, first, int(cnt)
			off += int64(b.CLen)
			first += int(cnt)
		}
		return bs, first, nil
	}
	var first int
	var err error
	if ft.Blocks, first, err = readBlocks(nb, "block"); err != nil {
		return nil, err
	}
	if d.Err != nil || first != ft.N {
		return nil, corruptf("block index covers %d of %d activities", first, ft.N)
	}
	if version >= 2 {
		nc := d.Uvarint()
		if d.Err != nil || nc > n || nc > uint64(len(d.B)) {
			return nil, corruptf("malformed footer: copy block count")
		}
		if ft.Copies, _, err = readBlocks(nc, "copy block"); err != nil {
			return nil, err
		}
	}
	// place gives s the next offset and checks its lengths against the
	// limits of a part of the index.
	place := func(s *Section) bool {
		s.Off = off
		off += int64(s.CLen)
		return s.CLen <= uint64(size) && s.RLen <= maxIndexRaw && (s.RLen <= ratioFree || s.RLen <= maxRatio*s.CLen+1024)
	}
	if version >= 3 {
		// Value groups, then chunks, then the dirs and the head.
		lists := []*[]Section{&ft.Groups, &ft.Chunks}
		for i, what := range []string{"value group", "chunk"} {
			k := d.Uvarint()
			if d.Err != nil || k > uint64(len(d.B)) {
				return nil, corruptf("malformed footer: %s count", what)
			}
			if i == 1 && k != (n+chunk-1)/chunk {
				return nil, corruptf("malformed footer: %d chunks for %d activities", k, n)
			}
			ss := make([]Section, k)
			for j := range ss {
				readSection(&ss[j])
				if d.Err != nil || !place(&ss[j]) || (i == 1 && ss[j].RLen > maxBlockRaw) {
					return nil, corruptf("%s %d: malformed entry in the footer", what, j)
				}
			}
			*lists[i] = ss
		}
		for f := range ft.Dirs {
			if !place(&ft.Dirs[f]) {
				return nil, corruptf("malformed footer: dir of %s", FieldNames[f])
			}
		}
		if !place(&ft.Head) {
			return nil, corruptf("malformed footer: head")
		}
	} else if !place(&ft.Index) {
		return nil, corruptf("malformed footer: index")
	}
	if d.Err != nil || len(d.B) != 0 {
		return nil, corruptf("malformed footer: %d bytes after the block index", len(d.B))
	}
	if off != size-TrailerSize-flen {
		return nil, corruptf("sections do not add up to the file size")
	}
	return ft, nil
}

// ReadIndex reads, checks and decompresses the index section of f, for
// DecodeIndex.
func (ft *Footer) ReadIndex(f io.ReaderAt) ([]byte, error) {
	_, _, dec := zstdCodecs()
	return readSection(f, ft.Index, dec, "index")
}

// ReadBlock reads, checks and decodes block i of f. Its errors start with
// "block i: ".
func (ft *Footer) ReadBlock(f io.ReaderAt, i int) (*Block, error) {
	return readBlock(f, ft.Blocks, i, "block", false)
}

// ReadCopyBlock reads, checks and decodes copy block i of f. Its errors
// start with "copy block i: ".
func (ft *Footer) ReadCopyBlock(f io.ReaderAt, i int) (*Block, error) {
	return readBlock(f, ft.Copies, i, "copy block", ft.Format >= 3)
}

// readBlock reads block i of the list bs, with its copy rows if rows; what
// names the list in errors.
func readBlock(f io.ReaderAt, bs []Section, i int, what string, rows bool) (*Block, error) {
	if i < 0 || i >= len(bs) {
		return nil, corruptf("no %s %d", what, i)
	}
	_, dec, _ := zstdCodecs()
	raw, err := readSection(f, bs[i], dec, fmt.Sprintf("%s %d", what, i))
	if err != nil {
		return nil, err
	}
	b, err := decodeBlockRows(raw, bs[i].Count, rows)
	if err != nil {
		return nil, corruptf("%s %d: %v", what, i, err)
	}
	return b, nil
}

// BlockAt returns the block holding position p, where position 0 is the
// newest record (ordinal N-1).
func (ft *Footer) BlockAt(p int) int { return blockAt(ft.Blocks, p) }

// CopyBlockAt returns the copy block holding position p of the copies.
func (ft *Footer) CopyBlockAt(p int) int { return blockAt(ft.Copies, p) }

// CopyCount returns the number of records in the copy blocks.
func (ft *Footer) CopyCount() int {
	if len(ft.Copies) == 0 {
		return 0
	}
	last := ft.Copies[len(ft.Copies)-1]
	return last.First + last.Count
}

func blockAt(bs []Section, p int) int {
	lo, hi := 0, len(bs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bs[m].First+bs[m].Count <= p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// readSection reads, checks and decompresses one section; what names it in
// errors.
func readSection(f io.ReaderAt, s Section, dec *zstd.Decoder, what string) ([]byte, error) {
	comp := make([]byte, s.CLen)
	if _, err := f.ReadAt(comp, s.Off); err != nil {
		return nil, err
	}
	if crc32.Checksum(comp, crcTable) != s.CRC {
		return nil, corruptf("%s: checksum mismatch", what)
	}
	raw, err := decompressParts(comp, s.RLen, dec)
	if err != nil {
		return nil, corruptf("%s: %v", what, err)
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

// CompressParts appends to dst the section form of raw cut at cuts
// (ascending offsets into raw): a zstd frame per part. scratch keeps the
// frame buffers from one call to the next.
func CompressParts(dst, raw []byte, cuts []int, scratch *[][]byte) []byte {
	enc, _, _ := zstdCodecs()
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

// decompressParts inverts CompressParts; the result must be rlen bytes.
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
