package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
// testWindow with blocks of blockBytes, and returns the file.
func writeTestFile(tb testing.TB, recs []testRecord, blockBytes int) []byte {
	tb.Helper()
	var f memFile
	w, err := NewWriter(&f, "test.arc", testWindow, testWidth, len(recs), blockBytes)
	require.NoError(tb, err)
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
	recs := testRecords(500)
	b := writeTestFile(t, recs, 1000)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	require.Equal(t, int64(testWindow), ft.Window)
	require.Equal(t, testWidth, ft.Width)
	require.Equal(t, len(recs), ft.N)
	require.Greater(t, len(ft.Blocks), 5)

	raw, err := ft.ReadIndex(r)
	require.NoError(t, err)
	n := len(recs)
	ix, err := DecodeIndex(raw, n, func(o int, ns int64, seq uint64) error {
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
	_, err = DecodeIndex(raw, n, func(o int, ns int64, seq uint64) error { return stop })
	require.Same(t, stop, err, "DecodeIndex returns id's error as it is")
}

// TestFormatBytes pins the raw sections the writer produces: the format must
// not change without a new Format. (The compressed bytes are zstd's.)
func TestFormatBytes(t *testing.T) {
	b := writeTestFile(t, testRecords(300), 2000)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	h := sha256.New()
	h.Write(b[:HeaderSize])
	_, bdec, idec := zstdCodecs()
	for _, s := range ft.Blocks {
		raw, err := readSection(r, s, bdec, "block")
		require.NoError(t, err)
		h.Write(binary.AppendUvarint(nil, uint64(s.Count)))
		h.Write(raw)
	}
	raw, err := readSection(r, ft.Index, idec, "index")
	require.NoError(t, err)
	h.Write(raw)
	require.Len(t, ft.Blocks, 9)
	require.Equal(t, 3706, len(raw))
	require.Equal(t, "0337b27ab3873c4dfcde2dbc9a4f0bf232d1822f91357bc72efc603ad96d7905", fmt.Sprintf("%x", h.Sum(nil)))
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
