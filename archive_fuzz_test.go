package activitystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/stretchr/testify/require"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
	"github.com/activitystore/activitystore/internal/codec"
)

// TestArchiveFieldNames checks that the archive format orders and names the
// label fields as the store does.
func TestArchiveFieldNames(t *testing.T) {
	require.Equal(t, fieldNames, arcfmt.FieldNames)
}

// seedArchive returns a small archive file of window day 0 with several
// blocks, written by the archive writer from varied activities, in format 2
// if format2.
func seedArchive(tb testing.TB, format2 bool) []byte {
	tb.Helper()
	acts := variedActs([]int{0}, 24, 5)
	slices.Reverse(acts) // newest first
	for i := range acts {
		acts[i].ID = makeID(acts[i].Time.UnixNano(), uint64(100+len(acts)-i))
	}
	return writeTestArchiveAs(tb, format2, filepath.Join(tb.TempDir(), "seed.arc"), windowOf(0), int64(24*time.Hour), acts, 300, nil)
}

// seedIndex returns the footer and the raw (decompressed) index section of
// an archive.
func seedIndex(tb testing.TB, b []byte) (*arcfmt.Footer, []byte) {
	tb.Helper()
	r := bytes.NewReader(b)
	ft, err := arcfmt.ReadFooter(r, int64(len(b)))
	require.NoError(tb, err)
	index, err := ft.ReadIndex(r)
	require.NoError(tb, err)
	var dicts [numFields]dict
	_, err = decodeIndex(index, ft, &dicts, "seed.arc")
	require.NoError(tb, err)
	require.GreaterOrEqual(tb, len(ft.Blocks), 2)
	return ft, index
}

// fixArchiveChecksums returns a copy of an archive file whose section and
// footer checksums match its bytes as far as its footer can be parsed, so
// that a fuzzer gets past them; nil if the footer cannot be found.
func fixArchiveChecksums(b []byte) []byte {
	size := int64(len(b))
	if size < arcfmt.HeaderSize+arcfmt.TrailerSize {
		return nil
	}
	flen := int64(binary.BigEndian.Uint32(b[size-arcfmt.TrailerSize+4:]))
	if flen > size-arcfmt.HeaderSize-arcfmt.TrailerSize {
		return nil
	}
	b = slices.Clone(b)
	fstart := size - arcfmt.TrailerSize - flen
	d := codec.Decoder{B: b[fstart : size-arcfmt.TrailerSize]}
	version := d.Byte()
	d.Uvarint()
	d.Uvarint()
	d.Uvarint()
	if version >= 3 {
		d.Uvarint() // chunk size
	}
	type sec struct {
		clen   uint64
		crcPos int64
	}
	readSec := func() sec {
		s := sec{clen: d.Uvarint()}
		d.Uvarint()
		s.crcPos = size - arcfmt.TrailerSize - int64(len(d.B))
		d.Fixed(4)
		return s
	}
	// The index, or (format 3) the head and the directories: they come
	// last in the file.
	var tail []sec
	for range 1 + 5*min(int(version)/3, 1) {
		tail = append(tail, readSec())
	}
	if len(tail) > 1 {
		tail = append(tail[1:], tail[0])
	}
	var blocks []sec // the blocks, then (format 2) the copy blocks, then (format 3) groups and chunks
	for list := range 4 {
		if (list == 1 && version < 2) || (list >= 2 && version < 3) {
			break
		}
		nb := d.Uvarint()
		for i := uint64(0); i < nb && d.Err == nil; i++ {
			if list < 2 {
				d.Uvarint()
			}
			blocks = append(blocks, readSec())
		}
	}
	fix := func(s sec, off int64) int64 {
		if d.Err == nil && s.clen <= uint64(fstart) && off+int64(s.clen) <= fstart {
			binary.BigEndian.PutUint32(b[s.crcPos:], crc32.Checksum(b[off:off+int64(s.clen)], crcTable))
		}
		return off + int64(min(s.clen, uint64(size)))
	}
	off := int64(arcfmt.HeaderSize)
	for _, s := range append(blocks, tail...) {
		off = fix(s, off)
	}
	binary.BigEndian.PutUint32(b[size-arcfmt.TrailerSize:], crc32.Checksum(b[fstart:size-arcfmt.TrailerSize], crcTable))
	return b
}

// checkArchiveBytes reads an archive file the way the store does and checks
// the guarantees the store relies on: every failure is ErrCorrupt, and what
// decodes is consistent.
func checkArchiveBytes(t *testing.T, b []byte) {
	r := bytes.NewReader(b)
	ft, err := arcfmt.ReadFooter(r, int64(len(b)))
	if err != nil {
		require.ErrorIs(t, archiveErr("fuzz.arc", err), ErrCorrupt)
		return
	}
	// The blocks, then the copy blocks, back to back from the header.
	off := int64(arcfmt.HeaderSize)
	records := func(secs []arcfmt.Section) int {
		total := 0
		for _, s := range secs {
			require.Equal(t, total, s.First)
			require.Positive(t, s.Count)
			require.Equal(t, off, s.Off)
			total += s.Count
			off += int64(s.CLen)
		}
		return total
	}
	require.Equal(t, ft.N, records(ft.Blocks))
	copies := records(ft.Copies)
	require.LessOrEqual(t, copies, ft.N)
	require.Equal(t, copies, ft.CopyCount())
	if ft.Format >= 3 {
		for _, s := range slices.Concat(ft.Groups, ft.Chunks, ft.Dirs[:], []arcfmt.Section{ft.Head}) {
			require.Equal(t, off, s.Off)
			off += int64(s.CLen)
		}
		require.LessOrEqual(t, off, int64(len(b)))
		checkParts(t, r, ft)
	} else {
		require.Equal(t, off, ft.Index.Off)
		require.LessOrEqual(t, ft.Index.Off+int64(ft.Index.CLen), int64(len(b)))
	}
	var dicts [numFields]dict
	ix, err := loadIndex(r, ft, &dicts, "fuzz.arc")
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
		return
	}
	checkLoadedIndex(t, ix, ft, &dicts)
	for _, list := range []struct {
		secs []arcfmt.Section
		read func(*arcfmt.Footer, io.ReaderAt, int) (*arcfmt.Block, error)
	}{{ft.Blocks, (*arcfmt.Footer).ReadBlock}, {ft.Copies, (*arcfmt.Footer).ReadCopyBlock}} {
		for i, s := range list.secs {
			blk, err := list.read(ft, r, i)
			if err != nil {
				require.ErrorIs(t, archiveErr("fuzz.arc", err), ErrCorrupt, "block %d", i)
				continue
			}
			require.Equal(t, s.Count, blk.Len())
			checkBlock(t, blk)
		}
	}
}

// checkBlock checks what fetchArchived assumes of a block's records, and
// that the records written again as a block read back the same.
func checkBlock(t *testing.T, b *arcfmt.Block) {
	var bb arcfmt.BlockBuilder
	for j := range b.Len() {
		api, det := b.Record(j)
		require.LessOrEqual(t, len(api), MaxAPICallBytes)
		require.LessOrEqual(t, len(det), MaxDetailsBytes)
		bb.Add(string(api), det)
	}
	raw := bb.Encode(nil)
	var frames [][]byte
	sec := arcfmt.CompressParts(nil, raw, bb.Cuts(), &frames)
	ft := &arcfmt.Footer{Blocks: []arcfmt.Section{{CLen: uint64(len(sec)), RLen: uint64(len(raw)), CRC: crc32.Checksum(sec, crcTable), Count: b.Len()}}}
	again, err := ft.ReadBlock(bytes.NewReader(sec), 0)
	require.NoError(t, err, "re-encoded block")
	require.Equal(t, b.Len(), again.Len())
	for j := range b.Len() {
		api, det := b.Record(j)
		api2, det2 := again.Record(j)
		require.Equal(t, string(api), string(api2))
		require.Equal(t, string(det), string(det2))
	}
}

// checkParts reads each part of a format 3 index as a query does, one at a
// time: every failure must be a corruption error, and what reads must hold
// what the queries assume.
func checkParts(t *testing.T, r io.ReaderAt, ft *arcfmt.Footer) {
	corrupt := func(err error) bool {
		if err != nil {
			require.ErrorIs(t, archiveErr("fuzz.arc", err), ErrCorrupt)
		}
		return err != nil
	}
	if h, err := ft.ReadHead(r); !corrupt(err) {
		require.Len(t, h.Firsts, len(ft.Chunks))
	}
	var limits [arcfmt.NumFields]int
	for f := range numFields {
		d, err := ft.ReadDir(r, int(f))
		if corrupt(err) {
			continue
		}
		limits[f] = len(d.Values)
		for i := range d.Values {
			g, err := ft.ReadGroup(r, d.Group(i))
			if corrupt(err) {
				continue
			}
			ords, err := d.Ordinals(i, g, ft.N, nil)
			if !corrupt(err) {
				require.Len(t, ords, int(d.Counts[i]))
				for k, o := range ords {
					require.Less(t, int(o), ft.N)
					if k > 0 {
						require.Less(t, ords[k-1], o)
					}
				}
			}
		}
	}
	for c := range ft.Chunks {
		ch, err := ft.ReadChunk(r, c, limits)
		if corrupt(err) {
			continue
		}
		require.Len(t, ch.IDs, ft.ChunkLen(c))
		for f, l := range limits {
			for _, v := range ch.Labels[f] {
				if l > 0 {
					require.Less(t, int(v), l)
				}
			}
		}
		for _, p := range ch.Copies {
			require.LessOrEqual(t, int(p), ft.CopyCount())
		}
	}
}

// decodeAndCheckIndex decodes an index section: a failure must be a
// corruption error (it returns nil), a success must pass checkLoadedIndex.
func decodeAndCheckIndex(t *testing.T, raw []byte, ft *arcfmt.Footer) *arcIndex {
	var dicts [numFields]dict
	ix, err := decodeIndex(raw, ft, &dicts, "fuzz.arc")
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
		return nil
	}
	checkLoadedIndex(t, ix, ft, &dicts)
	return ix
}

// checkLoadedIndex checks an index that loaded: what checkIndex checks,
// and where the copies are.
func checkLoadedIndex(t *testing.T, ix *arcIndex, ft *arcfmt.Footer, dicts *[numFields]dict) {
	checkIndex(t, ix, ft, dicts)
	// Where the copies are, as fetchArchived finds them: inside the copy
	// blocks, each at most once.
	seen := map[int]bool{}
	for o := range ft.N {
		if p, ok := ix.copyOf(o); ok {
			require.GreaterOrEqual(t, p, 0)
			require.Less(t, p, ft.CopyCount())
			require.False(t, seen[p], "copy position %d twice", p)
			seen[p] = true
		}
	}
}

// checkIndex checks what fetchArchived and the queries assume of an index:
// IDs ascending within the window, and every ordinal with exactly one value
// per field, the one whose bitmap holds it.
func checkIndex(t *testing.T, ix *arcIndex, ft *arcfmt.Footer, dicts *[numFields]dict) {
	seg := ix.seg
	require.Len(t, seg.ids, ft.N)
	lo := idFloor(ft.Window * ft.Width)
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
			require.Less(t, int(bm.Maximum()), ft.N)
			total += bm.GetCardinality()
		}
		require.Equal(t, uint64(ft.N), total, "ordinals in the %s bitmaps", field(f))
		require.Len(t, ix.vals[f], len(seg.bms[f]), "%s values and bitmaps", field(f))
		require.Len(t, ix.labels[f], ft.N)
		for o := range ft.N {
			require.Less(t, int(ix.labels[f][o]), len(ix.vals[f]))
			vn, ok := dicts[f].lookup(ix.label(field(f), o))
			require.True(t, ok)
			require.True(t, seg.bms[f][vn].Contains(uint32(o)), "ordinal %d: %s %q not in its bitmap", o, field(f), ix.label(field(f), o))
		}
	}
}

// FuzzArchiveFile reads arbitrary bytes as an archive file: footer, index
// and every block. It must never panic; every failure must be ErrCorrupt.
// Each input is read as it is, then with its checksums fixed so that the
// fuzzer reaches the parsers behind them.
func FuzzArchiveFile(f *testing.F) {
	f.Add(seedArchive(f, true))
	b := seedArchive(f, false)
	f.Add(b)
	for _, n := range []int{0, 10, arcfmt.HeaderSize + arcfmt.TrailerSize, len(b) / 2, len(b) - arcfmt.TrailerSize, len(b) - 1} {
		f.Add(b[:n])
	}
	for _, off := range []int{0, 9, arcfmt.HeaderSize + 3, len(b) / 2, len(b) - arcfmt.TrailerSize - 5, len(b) - arcfmt.TrailerSize + 5, len(b) - 1} {
		c := slices.Clone(b)
		c[off] ^= 0x21
		f.Add(c)
	}
	f.Add([]byte(`{"not":"an archive, but long enough to be read as one"}`))
	s, err := Open(f.TempDir(), arcOpts())
	require.NoError(f, err)
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		checkArchiveBytes(t, b)
		checkLazy(t, s, b)
		if fixed := fixArchiveChecksums(b); fixed != nil {
			checkArchiveBytes(t, fixed)
			checkLazy(t, s, fixed)
		}
	})
}

// lazyGen numbers the files checkLazy writes.
var lazyGen atomic.Uint64

// checkLazy reads a file of format 3 through store s the way queries do,
// part by part (as if an archive record of s named it): every failure must
// be ErrCorrupt, and what reads must hold what the queries assume.
func checkLazy(t *testing.T, s *Store, b []byte) {
	ft, err := arcfmt.ReadFooter(bytes.NewReader(b), int64(len(b)))
	if err != nil || ft.Format < 3 {
		return
	}
	name := archiveName(ft.Window, lazyGen.Add(1))
	path := filepath.Join(s.archDir, name)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	defer os.Remove(path)
	a := &archive{window: ft.Window, width: ft.Width, n: ft.N, size: int64(len(b)), name: name, t: s.tier}
	defer s.removeArchive(a)
	ctx := context.Background()
	corrupt := func(err error) bool {
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
		}
		return err != nil
	}
	sl, err := s.arcView(ctx, a)
	if corrupt(err) {
		return
	}
	require.NotNil(t, sl)
	for f := range numFields {
		vals, err := s.arcField(sl, f)
		if corrupt(err) {
			continue
		}
		for _, vb := range vals {
			require.Less(t, int(vb.bm.Maximum()), ft.N)
			sv, err := s.arcValue(sl, f, vb.v)
			if !corrupt(err) {
				require.NotNil(t, sv)
				require.Less(t, int(sv.bm.Maximum()), ft.N)
				if sv.ids != nil {
					require.Len(t, sv.ids, int(sv.bm.GetCardinality()))
					require.Len(t, sv.recs, len(sv.ids))
				}
			}
		}
	}
	var ids []ID
	for c := range sl.firsts {
		if ch, err := s.arcChunk(sl, c); !corrupt(err) {
			ids = append(ids, ch.ids...)
		}
	}
	if len(ids) > 0 {
		page := slices.Clone(ids[max(0, len(ids)-50):])
		slices.Reverse(page)
		out := make([]Activity, len(page))
		if !corrupt(s.fetchArchived(ctx, a, page, out, true)) {
			for k, a := range out {
				require.Equal(t, page[k], a.ID)
			}
		}
	}
}

// FuzzDecodeIndex feeds arbitrary raw (decompressed) index sections to
// decodeIndex for an archive of n activities of day 0's window.
func FuzzDecodeIndex(f *testing.F) {
	ft, index := seedIndex(f, seedArchive(f, true))
	f.Add(index, uint16(ft.N))
	f.Add(index, uint16(ft.N-1))
	f.Add(index[:len(index)/2], uint16(ft.N))
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
		// Room for a copy of every activity.
		ft := &arcfmt.Footer{Format: 2, Window: windowOf(0), Width: int64(24 * time.Hour), N: int(n)}
		if n > 0 {
			ft.Copies = []arcfmt.Section{{Count: int(n)}}
		}
		ix := decodeAndCheckIndex(t, raw, ft)
		if ix == nil {
			return
		}
		hi := idFloor((ft.Window + 1) * ft.Width)
		for _, id := range ix.seg.ids {
			require.Equal(t, -1, id.Compare(hi))
		}
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
