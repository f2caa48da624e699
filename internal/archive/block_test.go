package archive

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedBlocks returns the raw blocks of a small archive and their record
// counts.
func seedBlocks(tb testing.TB) (blocks [][]byte, counts []int) {
	tb.Helper()
	b := writeTestFile(tb, testRecords(24), 300)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(tb, err)
	_, bdec, _ := zstdCodecs()
	for _, s := range ft.Blocks {
		raw, err := readSection(r, s, bdec, "block")
		require.NoError(tb, err)
		blocks = append(blocks, raw)
		counts = append(counts, s.Count)
	}
	require.GreaterOrEqual(tb, len(blocks), 2)
	return blocks, counts
}

// checkBlock checks what readers assume of a decoded block, and that the
// block builder encodes its records to a block that decodes to the same
// records.
func checkBlock(t *testing.T, b *Block, count int) {
	require.Len(t, b.off, 2*count+1)
	require.Equal(t, count, b.Len())
	require.Zero(t, b.off[0])
	require.Equal(t, len(b.buf), int(b.off[2*count]))
	for j := range 2 * count {
		require.LessOrEqual(t, b.off[j], b.off[j+1])
	}
	var bb BlockBuilder
	for j := range count {
		api, det := b.Record(j)
		require.LessOrEqual(t, len(api), MaxAPICall)
		require.LessOrEqual(t, len(det), MaxDetails)
		bb.Add(string(api), det)
	}
	again, err := decodeBlock(bb.Encode(nil), count)
	require.NoError(t, err, "re-encoded block")
	require.Equal(t, b.off, again.off)
	require.Equal(t, b.buf, again.buf)
}

// FuzzDecodeBlock feeds arbitrary raw (decompressed) blocks to decodeBlock
// with a record count. It must never panic, and what it accepts must
// re-encode to the same records.
func FuzzDecodeBlock(f *testing.F) {
	blocks, counts := seedBlocks(f)
	for i, raw := range blocks {
		f.Add(raw, counts[i])
	}
	f.Add(blocks[0], counts[0]+1)
	f.Add(blocks[0][:len(blocks[0])-3], counts[0])
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

// BenchmarkDecodeBlock decodes one block of bench-like records
// (decompressed): about 256 KiB of details.
func BenchmarkDecodeBlock(b *testing.B) {
	var bb BlockBuilder
	for i := 0; bb.Size() < 256<<10; i++ {
		d := fmt.Sprintf(`{"ip":"10.%d.%d.%d","status":200,"duration_ms":%d,"request_id":"%016x%016x","message":"request completed","region":"us-east-1"}`,
			i%256, i*7%256, i*13%256, i%97, uint64(i)*0x9e3779b97f4a7c15, uint64(i)*0xbf58476d1ce4e5b9)
		bb.Add("POST /api/serving/deploy", []byte(d))
	}
	raw := bb.Encode(nil)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeBlock(raw, bb.Len()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadBlock reads one 256 KiB block of an archive: its checksum,
// zstd decompression and decoding, what a query pays for a block its cache
// does not hold.
func BenchmarkReadBlock(b *testing.B) {
	recs := testRecords(20000)
	file := writeTestFile(b, recs, 256<<10)
	r := bytes.NewReader(file)
	ft, err := ReadFooter(r, int64(len(file)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(ft.Blocks[0].RLen))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ft.ReadBlock(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
