package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// memFile is a File in memory.
type memFile struct{ bytes.Buffer }

func (*memFile) Sync() error { return nil }

// testRecord is one activity as a Writer takes it.
type testRecord struct {
	ns      int64
	seq     uint64
	labels  [NumFields]string
	apicall string
	details []byte
}

const (
	testWindow = 20000
	testWidth  = int64(24 * time.Hour)
)

// testRecords returns n records spread over window testWindow, newest
// first, with details of every kind a block stores: split objects, objects
// kept whole, hex strings, nothing.
func testRecords(n int) []testRecord {
	details := []string{
		`{"n":%d,"ok":true}`,
		`{"nested":{"a":[1,2,{"b":"x,y}"}]},"s":"q\"uote","n":%d}`,
		`{ "spaced" : %d }`,
		``,
		`{}`,
		`{"n":%d,"list":["a","b"],"obj":{}}`,
		`{"request_id":"%016x","status":200}`,
	}
	recs := make([]testRecord, n)
	for i := range recs {
		r := &recs[n-1-i]
		r.ns = testWindow*testWidth + int64(i)*(testWidth/int64(n))
		r.seq = uint64(100 + i)
		r.labels = [NumFields]string{
			fmt.Sprintf("type-%d", i%3), fmt.Sprintf("user-%d", i%5), "module", fmt.Sprintf("action-%d", i%2), "",
		}
		r.apicall = fmt.Sprintf("POST /api/x/%d", i%7)
		if f := details[i%len(details)]; f != "" {
			if bytes.Contains([]byte(f), []byte("%")) {
				f = fmt.Sprintf(f, i)
			}
			r.details = []byte(f)
		}
	}
	return recs
}

// writeTestFile writes recs (newest first) as the archive of window
// testWindow with blocks of blockBytes, and returns the file. copies, if
// positive, is the KeepCopies limit.
func writeTestFile(tb testing.TB, recs []testRecord, blockBytes int, copies ...int) []byte {
	tb.Helper()
	c := 0
	if len(copies) > 0 {
		c = copies[0]
	}
	return writeTestFileAs(tb, Format, recs, blockBytes, c)
}

// writeTestFileAs is writeTestFile in the given format (2 or Format).
func writeTestFileAs(tb testing.TB, format int, recs []testRecord, blockBytes, copies int) []byte {
	tb.Helper()
	var f memFile
	w, err := NewWriter(&f, "test.arc", testWindow, testWidth, len(recs), blockBytes)
	require.NoError(tb, err)
	if format == 2 {
		w.WriteFormat2()
	}
	w.KeepCopies(copies)
	for _, r := range recs {
		require.NoError(tb, w.Add(r.ns, r.seq, r.labels, r.apicall, r.details))
	}
	require.NoError(tb, w.Finish())
	require.Equal(tb, int64(f.Len()), w.Size())
	return f.Bytes()
}

// TestWriteRead writes records and reads them back: footer, index and
// every block.
func TestWriteRead(t *testing.T) {
	for _, format := range []int{2, Format} {
		t.Run(fmt.Sprint("format", format), func(t *testing.T) { testWriteRead(t, format) })
	}
}

func testWriteRead(t *testing.T, format int) {
	recs := testRecords(5000)
	b := writeTestFileAs(t, format, recs, 10000, 0)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	require.Equal(t, format, ft.Format)
	require.Equal(t, int64(testWindow), ft.Window)
	require.Equal(t, testWidth, ft.Width)
	require.Equal(t, len(recs), ft.N)
	require.Greater(t, len(ft.Blocks), 5)

	n := len(recs)
	ix, err := ft.LoadIndex(r, func(o int, ns int64, seq uint64) error {
		rec := recs[n-1-o] // ordinals ascend, recs descend
		require.Equal(t, rec.ns, ns, "ordinal %d", o)
		require.Equal(t, rec.seq, seq, "ordinal %d", o)
		return nil
	})
	require.NoError(t, err)
	for f := range NumFields {
		for o := range n {
			v := ix.Labels[f][o]
			require.Equal(t, recs[n-1-o].labels[f], ix.Values[f][v])
			require.True(t, ix.Bitmaps[f][v].Contains(uint32(o)))
		}
	}

	for p := range n {
		i := ft.BlockAt(p)
		blk, err := ft.ReadBlock(r, i)
		require.NoError(t, err)
		api, det := blk.Record(p - ft.Blocks[i].First)
		require.Equal(t, recs[p].apicall, string(api), "position %d", p)
		require.Equal(t, string(recs[p].details), string(det), "position %d", p)
	}
	_, err = ft.ReadBlock(r, len(ft.Blocks))
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)

	stop := errors.New("stop")
	_, err = ft.LoadIndex(r, func(o int, ns int64, seq uint64) error { return stop })
	require.Same(t, stop, err, "LoadIndex returns id's error as it is")
}

// checkCopies checks, for the archive b of recs written with KeepCopies
// limit, that exactly the users with at most limit activities have copies
// (or only some of them, if partial) and that each copy equals its record;
// it returns how many users have copies.
func checkCopies(t *testing.T, b []byte, recs []testRecord, limit int, partial ...bool) int {
	t.Helper()
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	ix, err := ft.LoadIndex(r, func(int, int64, uint64) error { return nil })
	require.NoError(t, err)
	n, with := len(recs), 0
	for v, at := range ix.CopyAt {
		bm := ix.Bitmaps[UserField][v]
		if bm.GetCardinality() > uint64(limit) {
			require.Zero(t, at, "user %s has %d activities", ix.Values[UserField][v], bm.GetCardinality())
			continue
		}
		if at == 0 && len(partial) > 0 && partial[0] {
			continue
		}
		require.NotZero(t, at, "user %s", ix.Values[UserField][v])
		with++
		ords := bm.ToArray()
		for k := range ords {
			o := ords[len(ords)-1-k] // the k-th newest
			p := int(at-1) + k
			i := ft.CopyBlockAt(p)
			blk, err := ft.ReadCopyBlock(r, i)
			require.NoError(t, err)
			api, det := blk.Record(p - ft.Copies[i].First)
			rec := recs[n-1-int(o)]
			require.Equal(t, rec.apicall, string(api))
			require.Equal(t, string(rec.details), string(det))
		}
	}
	return with
}

// lightRecords returns 5000 test records: user-<i%5> stay heavy; every 3rd
// record goes to one of 600 light users, who get 2 or 3 each: all under a
// copy limit of 3, the others over.
func lightRecords() []testRecord {
	recs := testRecords(5000)
	for i := range recs {
		if i%3 == 0 {
			recs[i].labels[UserField] = fmt.Sprintf("light-%03d", (i/3)%600)
		}
	}
	return recs
}

// TestCopies writes files that keep copies of the records of users with
// few activities and checks them, with users both under and over the
// limit, and with more users than one copy block holds.
func TestCopies(t *testing.T) {
	recs := lightRecords()
	b := writeTestFile(t, recs, 4000, 3)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	require.Equal(t, Format, ft.Format)
	require.Greater(t, len(ft.Copies), 1, "several copy blocks")
	require.Positive(t, checkCopies(t, b, recs, 3))
	_, err = ft.ReadCopyBlock(r, len(ft.Copies))
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)

	// Without KeepCopies: no copy blocks, no user has copies.
	b = writeTestFile(t, recs, 4000)
	require.Zero(t, checkCopies(t, b, recs, 0))
}

// TestSpillCopies writes the records of TestCopies with at most 1 KiB of
// copies in memory. With a spill file, the archive is byte for byte the one
// written with every copy in memory; without one, the users whose records
// arrive once the memory (here 3/4 of what they need) is full get no
// copies; a spill file that cannot be
// opened or written fails Add with an error that says so.
func TestSpillCopies(t *testing.T) {
	recs := lightRecords()
	want := writeTestFile(t, recs, 4000, 3)
	write := func(mem int, open func() (Spill, error)) ([]byte, error) {
		var f memFile
		w, err := NewWriter(&f, "test.arc", testWindow, testWidth, len(recs), 4000)
		require.NoError(t, err)
		w.KeepCopies(3)
		w.SpillCopies(mem, open)
		for _, r := range recs {
			if err := w.Add(r.ns, r.seq, r.labels, r.apicall, r.details); err != nil {
				return nil, err
			}
		}
		if err := w.Finish(); err != nil {
			return nil, err
		}
		return f.Bytes(), nil
	}

	opens := 0
	var sp *os.File
	got, err := write(1<<10, func() (Spill, error) {
		opens++
		var err error
		sp, err = os.CreateTemp(t.TempDir(), "copies")
		return sp, err
	})
	require.NoError(t, err)
	defer sp.Close()
	require.Equal(t, 1, opens, "the spill file is opened once")
	st, err := sp.Stat()
	require.NoError(t, err)
	require.Greater(t, st.Size(), int64(1<<10), "copies went to the spill file")
	require.Equal(t, want, got, "the same file as with every copy in memory")

	got, err = write(int(st.Size())*3/4, nil)
	require.NoError(t, err)
	all := checkCopies(t, want, recs, 3)
	some := checkCopies(t, got, recs, 3, true)
	require.Positive(t, some)
	require.Less(t, some, all, "without a spill file, fewer users get copies")

	disk := errors.New("disk full")
	_, err = write(1<<10, func() (Spill, error) { return nil, disk })
	require.ErrorIs(t, err, disk)
	require.ErrorContains(t, err, "cannot open the spill file")
	_, err = write(1<<10, func() (Spill, error) { return failingSpill{disk}, nil })
	require.ErrorIs(t, err, disk)
	require.ErrorContains(t, err, "cannot write the spill file")
}

// failingSpill is a Spill whose every call fails with err.
type failingSpill struct{ err error }

func (f failingSpill) Write([]byte) (int, error)         { return 0, f.err }
func (f failingSpill) ReadAt([]byte, int64) (int, error) { return 0, f.err }

// TestReadOldFormats reads files written by the format 1 and format 2
// writers (testdata): the same records, and format 2's copies.
func TestReadOldFormats(t *testing.T) {
	for _, format := range []int{1, 2} {
		b, err := os.ReadFile(fmt.Sprintf("testdata/format%d.arc", format))
		require.NoError(t, err)
		recs := testRecords(300)
		if format == 2 {
			for i := range recs {
				if i%7 == 0 {
					recs[i].labels[UserField] = fmt.Sprintf("light-%d", i%50)
				}
			}
		}
		r := bytes.NewReader(b)
		ft, err := ReadFooter(r, int64(len(b)))
		require.NoError(t, err)
		require.Equal(t, format, ft.Format)
		ix, err := ft.LoadIndex(r, func(int, int64, uint64) error { return nil })
		require.NoError(t, err)
		for o := range recs {
			for f := range NumFields {
				require.Equal(t, recs[len(recs)-1-o].labels[f], ix.Values[f][ix.Labels[f][o]])
			}
		}
		for p := range recs {
			i := ft.BlockAt(p)
			blk, err := ft.ReadBlock(r, i)
			require.NoError(t, err)
			api, det := blk.Record(p - ft.Blocks[i].First)
			require.Equal(t, recs[p].apicall, string(api))
			require.Equal(t, string(recs[p].details), string(det))
		}
		if format == 1 {
			require.Empty(t, ft.Copies)
			require.Nil(t, ix.CopyAt)
		} else {
			require.Positive(t, checkCopies(t, b, recs, 2))
		}
	}
}

// TestFormatBytes pins the raw sections the writer produces: the format must
// not change without a new Format. (The compressed bytes are zstd's.)
func TestFormatBytes(t *testing.T) {
	recs := testRecords(300)
	for i := range recs {
		if i%7 == 0 {
			recs[i].labels[UserField] = fmt.Sprintf("light-%d", i%50)
		}
	}
	for _, tc := range []struct {
		format int
		sum    string
	}{
		{2, "5a7c9a6898bbe8c0191289dc74accc55c3243be4d50e284fe1f742229a0d0aaf"},
		{Format, "c0907f28c4ad95d5f60d35c26422797ef5b2145ca72715ca7565129b2afdfc0e"},
	} {
		b := writeTestFileAs(t, tc.format, recs, 2000, 2)
		r := bytes.NewReader(b)
		ft, err := ReadFooter(r, int64(len(b)))
		require.NoError(t, err)
		h := sha256.New()
		h.Write(b[:HeaderSize])
		_, bdec, idec := zstdCodecs()
		for _, s := range append(ft.Blocks, ft.Copies...) {
			raw, err := readSection(r, s, bdec, "block")
			require.NoError(t, err)
			h.Write(binary.AppendUvarint(nil, uint64(s.Count)))
			h.Write(raw)
		}
		require.Len(t, ft.Copies, 1)
		require.Len(t, ft.Blocks, 9)
		parts := []Section{ft.Index}
		if tc.format >= 3 {
			parts = append(append(append(ft.Groups, ft.Chunks...), ft.Dirs[:]...), ft.Head)
		}
		for _, s := range parts {
			raw, err := readSection(r, s, idec, "index")
			require.NoError(t, err)
			h.Write(raw)
		}
		require.Equal(t, tc.sum, fmt.Sprintf("%x", h.Sum(nil)), "format %d", tc.format)
	}
}

// TestReadSectionAllocationBounded reads a section whose zstd frame claims a
// content size far above the section's recorded raw length (which the footer
// bounds: a block's by maxBlockRaw, a large index's by maxRatio times its
// compressed length). The reader fails on it,
// as it should, but should not allocate for the claimed size first: the
// point of the footer's limits is that a small file cannot make it allocate
// much more than its size times maxRatio.
func TestReadSectionAllocationBounded(t *testing.T) {
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
			s := Section{CLen: uint64(len(sec)), RLen: uint64(tc.payload), CRC: crc32.Checksum(sec, crcTable)}
			// The footer accepts these lengths.
			require.LessOrEqual(t, s.RLen, maxRatio*s.CLen+1024)
			bound := maxRatio*s.CLen + 1024

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := readSection(bytes.NewReader(sec), s, tc.dec, tc.name)
			runtime.ReadMemStats(&after)
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			allocated := after.TotalAlloc - before.TotalAlloc
			require.LessOrEqual(t, allocated, 4*bound+(1<<20),
				"reading a %d-byte %s section allocated %d bytes (its raw length is %d, the ratio bound %d)", len(sec), tc.name, allocated, s.RLen, bound)
		})
	}
}
