package activitystore

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/activitystore/activitystore/internal/codec"
)

// seedArchive returns a small archive file of window day 0 with several
// blocks, written by the archive writer from varied activities.
func seedArchive(tb testing.TB) []byte {
	tb.Helper()
	acts := variedActs([]int{0}, 24, 5)
	slices.Reverse(acts) // newest first
	for i := range acts {
		acts[i].ID = makeID(acts[i].Time.UnixNano(), uint64(100+len(acts)-i))
	}
	return writeTestArchiveWith(tb, filepath.Join(tb.TempDir(), "seed.arc"), windowOf(0), int64(24*time.Hour), acts, 300, nil)
}

// seedSections returns the raw (decompressed) index section and blocks of
// an archive.
func seedSections(tb testing.TB, b []byte) (index []byte, ft *archiveFooter, blocks [][]byte) {
	tb.Helper()
	r := bytes.NewReader(b)
	ft, err := readFooter(r, int64(len(b)), "seed.arc")
	require.NoError(tb, err)
	_, bdec, idec := zstdCodecs()
	index, err = readSection(r, ft.index, idec, "seed.arc", "index")
	require.NoError(tb, err)
	var dicts [numFields]dict
	_, err = decodeIndex(index, ft, &dicts, "seed.arc")
	require.NoError(tb, err)
	for _, s := range ft.blocks {
		raw, err := readSection(r, s, bdec, "seed.arc", "block")
		require.NoError(tb, err)
		blocks = append(blocks, raw)
	}
	require.GreaterOrEqual(tb, len(blocks), 2)
	return index, ft, blocks
}

// fixArchiveChecksums returns a copy of an archive file whose section and
// footer checksums match its bytes as far as its footer can be parsed, so
// that a fuzzer gets past them; nil if the footer cannot be found.
func fixArchiveChecksums(b []byte) []byte {
	size := int64(len(b))
	if size < archiveHeader+archiveTrailer {
		return nil
	}
	flen := int64(binary.BigEndian.Uint32(b[size-archiveTrailer+4:]))
	if flen > size-archiveHeader-archiveTrailer {
		return nil
	}
	b = slices.Clone(b)
	fstart := size - archiveTrailer - flen
	d := codec.Decoder{B: b[fstart : size-archiveTrailer]}
	d.Byte()
	d.Uvarint()
	d.Uvarint()
	d.Uvarint()
	type sec struct {
		clen   uint64
		crcPos int64
	}
	readSec := func() sec {
		s := sec{clen: d.Uvarint()}
		d.Uvarint()
		s.crcPos = size - archiveTrailer - int64(len(d.B))
		d.Fixed(4)
		return s
	}
	index := readSec()
	nb := d.Uvarint()
	var blocks []sec
	for i := uint64(0); i < nb && d.Err == nil; i++ {
		d.Uvarint()
		blocks = append(blocks, readSec())
	}
	fix := func(s sec, off int64) int64 {
		if d.Err == nil && s.clen <= uint64(fstart) && off+int64(s.clen) <= fstart {
			binary.BigEndian.PutUint32(b[s.crcPos:], crc32.Checksum(b[off:off+int64(s.clen)], crcTable))
		}
		return off + int64(min(s.clen, uint64(size)))
	}
	off := int64(archiveHeader)
	for _, s := range blocks {
		off = fix(s, off)
	}
	fix(index, off)
	binary.BigEndian.PutUint32(b[size-archiveTrailer:], crc32.Checksum(b[fstart:size-archiveTrailer], crcTable))
	return b
}

// checkArchiveBytes reads an archive file the way the store does and checks
// the guarantees the store relies on: every failure is ErrCorrupt, and what
// decodes is consistent.
func checkArchiveBytes(t *testing.T, b []byte) {
	r := bytes.NewReader(b)
	ft, err := readFooter(r, int64(len(b)), "fuzz.arc")
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
		return
	}
	total := 0
	off := int64(archiveHeader)
	for _, s := range ft.blocks {
		require.Equal(t, total, s.first)
		require.Positive(t, s.count)
		require.Equal(t, off, s.off)
		total += s.count
		off += int64(s.clen)
	}
	require.Equal(t, ft.n, total)
	require.Equal(t, off, ft.index.off)
	require.LessOrEqual(t, ft.index.off+int64(ft.index.clen), int64(len(b)))

	_, bdec, idec := zstdCodecs()
	raw, err := readSection(r, ft.index, idec, "fuzz.arc", "index")
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
		return
	}
	if decodeAndCheckIndex(t, raw, ft) == nil {
		return
	}
	for i, s := range ft.blocks {
		raw, err := readSection(r, s, bdec, "fuzz.arc", "block")
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt, "block %d", i)
			continue
		}
		blk, err := decodeBlock(raw, s.count)
		if err != nil {
			continue
		}
		checkBlock(t, blk, s.count)
	}
}

// decodeAndCheckIndex decodes an index section: a failure must be a
// corruption error (it returns nil), a success must pass checkIndex.
func decodeAndCheckIndex(t *testing.T, raw []byte, ft *archiveFooter) *arcIndex {
	var dicts [numFields]dict
	ix, err := decodeIndex(raw, ft, &dicts, "fuzz.arc")
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
		return nil
	}
	checkIndex(t, ix, ft, &dicts)
	return ix
}

// checkIndex checks what fetchArchived and the queries assume of an index:
// IDs ascending within the window, and every ordinal with exactly one value
// per field, the one whose bitmap holds it.
func checkIndex(t *testing.T, ix *arcIndex, ft *archiveFooter, dicts *[numFields]dict) {
	seg := ix.seg
	require.Len(t, seg.ids, ft.n)
	lo := idFloor(ft.window * ft.width)
	for o, id := range seg.ids {
		require.True(t, id.valid())
		require.GreaterOrEqual(t, id.Compare(lo), 0)
		if o > 0 {
			require.Equal(t, 1, id.Compare(seg.ids[o-1]))
		}
		require.Equal(t, o, seg.find(id))
	}
	for f := range numFields {
		var total uint64
		for _, bm := range seg.bms[f] {
			require.False(t, bm.IsEmpty())
			require.Less(t, int(bm.Maximum()), ft.n)
			total += bm.GetCardinality()
		}
		require.Equal(t, uint64(ft.n), total, "ordinals in the %s bitmaps", field(f))
		require.Len(t, ix.vals[f], len(seg.bms[f]), "%s values and bitmaps", field(f))
		require.Len(t, ix.labels[f], ft.n)
		for o := range ft.n {
			require.Less(t, int(ix.labels[f][o]), len(ix.vals[f]))
			vn, ok := dicts[f].lookup(ix.label(field(f), o))
			require.True(t, ok)
			require.True(t, seg.bms[f][vn].Contains(uint32(o)), "ordinal %d: %s %q not in its bitmap", o, field(f), ix.label(field(f), o))
		}
	}
}

// checkBlock checks what fetchArchived assumes of a decoded block, and that
// the writer's block builder encodes its records to a block that decodes to
// the same records.
func checkBlock(t *testing.T, b *block, count int) {
	require.Len(t, b.off, 2*count+1)
	require.Zero(t, b.off[0])
	require.Equal(t, len(b.buf), int(b.off[2*count]))
	for j := range 2 * count {
		require.LessOrEqual(t, b.off[j], b.off[j+1])
	}
	var bb blockBuilder
	for j := range count {
		api := b.buf[b.off[2*j]:b.off[2*j+1]]
		det := b.buf[b.off[2*j+1]:b.off[2*j+2]]
		require.LessOrEqual(t, len(api), MaxAPICallBytes)
		require.LessOrEqual(t, len(det), MaxDetailsBytes)
		bb.add(string(api), det)
	}
	again, err := decodeBlock(bb.encode(nil), count)
	require.NoError(t, err, "re-encoded block")
	require.Equal(t, b.off, again.off)
	require.Equal(t, b.buf, again.buf)
}

// FuzzArchiveFile reads arbitrary bytes as an archive file: footer, index
// and every block. It must never panic; every failure must be ErrCorrupt.
// Each input is read as it is, then with its checksums fixed so that the
// fuzzer reaches the parsers behind them.
func FuzzArchiveFile(f *testing.F) {
	b := seedArchive(f)
	f.Add(b)
	for _, n := range []int{0, 10, archiveHeader + archiveTrailer, len(b) / 2, len(b) - archiveTrailer, len(b) - 1} {
		f.Add(b[:n])
	}
	for _, off := range []int{0, 9, archiveHeader + 3, len(b) / 2, len(b) - archiveTrailer - 5, len(b) - archiveTrailer + 5, len(b) - 1} {
		c := slices.Clone(b)
		c[off] ^= 0x21
		f.Add(c)
	}
	f.Add([]byte(`{"not":"an archive, but long enough to be read as one"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkArchiveBytes(t, b)
		if fixed := fixArchiveChecksums(b); fixed != nil {
			checkArchiveBytes(t, fixed)
		}
	})
}

// FuzzDecodeIndex feeds arbitrary raw (decompressed) index sections to
// decodeIndex for an archive of n activities of day 0's window.
func FuzzDecodeIndex(f *testing.F) {
	index, ft, _ := seedSections(f, seedArchive(f))
	f.Add(index, uint16(ft.n))
	f.Add(index, uint16(ft.n-1))
	f.Add(index[:len(index)/2], uint16(ft.n))
	f.Add([]byte{}, uint16(0))
	// Two activities of types "a" and "b": one byte away from a type
	// listed twice.
	tiny := binary.AppendUvarint(nil, uint64(day(0).UnixNano()+1e9))
	tiny = binary.AppendUvarint(tiny, 1)
	tiny = binary.AppendUvarint(tiny, 1e9)
	tiny = binary.AppendUvarint(tiny, 2)
	tiny = append(tiny, 2, 1, 'a', 1, 'b', 1, 1, 0, 1)
	for range numFields - 1 {
		tiny = append(tiny, 1, 0, 2, 0, 0)
	}
	f.Add(tiny, uint16(2))
	f.Fuzz(func(t *testing.T, raw []byte, n uint16) {
		ft := &archiveFooter{window: windowOf(0), width: int64(24 * time.Hour), n: int(n)}
		ix := decodeAndCheckIndex(t, raw, ft)
		if ix == nil {
			return
		}
		hi := idFloor((ft.window + 1) * ft.width)
		for _, id := range ix.seg.ids {
			require.Equal(t, -1, id.Compare(hi))
		}
	})
}

// FuzzDecodeBlock feeds arbitrary raw (decompressed) blocks to decodeBlock
// with a record count. It must never panic, and what it accepts must
// re-encode to the same records.
func FuzzDecodeBlock(f *testing.F) {
	_, ft, blocks := seedSections(f, seedArchive(f))
	for i, raw := range blocks {
		f.Add(raw, ft.blocks[i].count)
	}
	f.Add(blocks[0], ft.blocks[0].count+1)
	f.Add(blocks[0][:len(blocks[0])-3], ft.blocks[0].count)
	// One record whose details are split into two keys, by hand: count,
	// apicall column (mode 0: length, bytes), keys "a" and "b", one shape
	// of both, the shape column, an empty column of whole details, then
	// the columns of "a" and of "b".
	f.Add([]byte("\x01\x00\x01x\x02\x01a\x01b\x01\x02\x00\x01\x01\x00\x00\x011\x00\x02\"\""), 1)
	// The same with the apicall as a table (mode 1) and "b" as hex (mode 2).
	f.Add([]byte("\x01\x01\x01\x01x\x00\x02\x01a\x01b\x01\x02\x00\x01\x01\x00\x00\x011\x02\x01\xab"), 1)
	f.Fuzz(func(t *testing.T, raw []byte, count int) {
		b, err := decodeBlock(raw, count)
		if err != nil {
			return
		}
		checkBlock(t, b, count)
	})
}

// FuzzSplitObject checks that whatever splitObject splits is rebuilt
// exactly, "{" + `"key":value` joined by "," + "}", and that a block keeps
// such details byte for byte.
func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"b":"x"}`, `{"n":{"a":[1,2,{"b":"x,y}"}]},"s":"q\"uote"}`,
		`{ "spaced" : 1 }`, `{"a": 1}`, `{"a":1}}`, `{"a":[}`, `{"a":1,}`, `{"":""}`, `{"a":"\\"}`,
		`{"a":1,"a":2}`, `{"k\"":"v"}`, `[1,2]`, `{"a"}`, `{"a":}`, `{`, `}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		keys, vals, ok := splitObject(d, nil, nil)
		if !ok {
			return
		}
		require.Equal(t, len(keys), len(vals))
		rebuilt := []byte{'{'}
		for i := range keys {
			if i > 0 {
				rebuilt = append(rebuilt, ',')
			}
			require.NotEmpty(t, vals[i])
			rebuilt = append(rebuilt, '"')
			rebuilt = append(rebuilt, keys[i]...)
			rebuilt = append(rebuilt, '"', ':')
			rebuilt = append(rebuilt, vals[i]...)
		}
		rebuilt = append(rebuilt, '}')
		require.Equal(t, string(d), string(rebuilt))

		if len(d) > MaxDetailsBytes {
			return
		}
		var bb blockBuilder
		bb.add("GET /x", d)
		bb.add("", []byte(`{"other":true}`))
		b, err := decodeBlock(bb.encode(nil), 2)
		require.NoError(t, err)
		require.Equal(t, "GET /x", string(b.buf[b.off[0]:b.off[1]]))
		require.Equal(t, string(d), string(b.buf[b.off[1]:b.off[2]]))
		require.Equal(t, `{"other":true}`, string(b.buf[b.off[3]:b.off[4]]))
	})
}

// FuzzDecodeBitmap feeds arbitrary bytes to decodeBitmap: it must never
// panic, and a bitmap it accepts must behave as a valid one in the
// operations queries run on it, outside any recover.
func FuzzDecodeBitmap(f *testing.F) {
	for _, bm := range []*roaring.Bitmap{
		roaring.BitmapOf(0),
		roaring.BitmapOf(1, 2, 3, 100, 1000),
		roaring.BitmapOf(70000, 70001, 140000),
		func() *roaring.Bitmap { b := roaring.New(); b.AddRange(0, 5000); b.RunOptimize(); return b }(),
		func() *roaring.Bitmap { b := roaring.New(); b.AddRange(10, 70000); b.Add(200000); return b }(),
	} {
		data, err := bm.ToBytes()
		require.NoError(f, err)
		f.Add(data, uint32(bm.Maximum()+1))
		f.Add(data, uint32(bm.Maximum()))
		f.Add(data[:len(data)-1], uint32(1<<20))
	}
	f.Add([]byte{}, uint32(10))
	f.Fuzz(func(t *testing.T, data []byte, n uint32) {
		bm, err := decodeBitmap(data, int(n))
		if err != nil {
			return
		}
		require.False(t, bm.IsEmpty())
		max := bm.Maximum()
		require.Less(t, max, n)
		card := bm.GetCardinality()
		require.Equal(t, card, bm.CardinalityInRange(0, uint64(n)))
		require.Equal(t, int64(max), bm.PreviousValue(n-1))
		require.True(t, bm.Contains(max))
		require.True(t, bm.Contains(bm.Minimum()))
		require.Equal(t, card, roaring.And(bm, bm).GetCardinality())
		require.Equal(t, card, roaring.FastOr(bm, roaring.New()).GetCardinality())
		if card <= 1<<16 {
			arr := bm.ToArray()
			require.Len(t, arr, int(card))
			for i := 1; i < len(arr); i++ {
				require.Less(t, arr[i-1], arr[i])
			}
			require.Equal(t, bm.Minimum(), arr[0])
			require.Equal(t, max, arr[len(arr)-1])
			ref := roaring.BitmapOf(arr...)
			require.Equal(t, card, roaring.And(bm, ref).GetCardinality())
			require.Equal(t, card, roaring.Or(bm, ref).GetCardinality())
		}
		again, err := bm.ToBytes()
		require.NoError(t, err)
		bm2, err := decodeBitmap(again, int(n))
		require.NoError(t, err)
		require.Equal(t, card, bm2.GetCardinality())
		require.Equal(t, card, roaring.And(bm, bm2).GetCardinality())
	})
}

// TestArchiveCorruptSectionAllocationBounded reads a section whose zstd frame
// claims a content size far above the section's recorded raw length (which
// the footer bounds by maxRatio times its compressed length). The reader
// fails on it, as it should, but should not allocate for the claimed size
// first: the point of the footer's limits is that a small file cannot make
// it allocate much more than its size times maxRatio.
func TestArchiveCorruptSectionAllocationBounded(t *testing.T) {
	_, bdec, idec := zstdCodecs()
	for _, tc := range []struct {
		name    string
		dec     *zstd.Decoder
		claimed uint64
		payload int
	}{
		{"index", idec, 64 << 20, 8 << 10},
		{"block", bdec, maxBlockRaw, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A zstd frame: magic, descriptor (8-byte content size, no
			// single segment), window descriptor (1 MiB), the claimed
			// content size, then one last raw block of payload bytes.
			frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x50}
			frame = binary.LittleEndian.AppendUint64(frame, tc.claimed)
			h := uint32(tc.payload)<<3 | 1
			frame = append(frame, byte(h), byte(h>>8), byte(h>>16))
			frame = append(frame, bytes.Repeat([]byte{'x'}, tc.payload)...)
			// The section: one part, that frame.
			sec := binary.AppendUvarint(nil, 1)
			sec = binary.AppendUvarint(sec, uint64(len(frame)))
			sec = binary.AppendUvarint(sec, uint64(tc.payload))
			sec = append(sec, frame...)
			s := section{clen: uint64(len(sec)), rlen: uint64(tc.payload), crc: crc32.Checksum(sec, crcTable)}
			// The footer accepts these lengths.
			require.LessOrEqual(t, s.rlen, maxRatio*s.clen+1024)
			bound := maxRatio*s.clen + 1024

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := readSection(bytes.NewReader(sec), s, tc.dec, "fuzz.arc", tc.name)
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, ErrCorrupt)
			allocated := after.TotalAlloc - before.TotalAlloc
			require.LessOrEqual(t, allocated, 4*bound+(1<<20),
				"reading a %d-byte %s section allocated %d bytes (its raw length is %d, the ratio bound %d)", len(sec), tc.name, allocated, s.rlen, bound)
		})
	}
}
