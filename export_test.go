package activitystore

import (
	"context"
	"slices"
	"time"

	zdict "github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
	"github.com/activitystore/activitystore/internal/codec"
)

// SealDue seals every segment due by the store's clock, for the external
// tests and benchmarks.
var SealDue = (*Store).sealDue

// Flush writes pebble's memtable to disk.
func Flush(s *Store) error { return s.db.Flush() }

// Settle flushes the memtable and waits for pebble's compactions to finish,
// so benchmarks measure a store at rest.
func Settle(s *Store) error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	for i := 0; i < 600; i++ {
		m := s.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Levels[0].TablesCount <= 1 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// LayoutSizes are the compressed sizes of one set of activities under the
// block layouts considered for archives.
type LayoutSizes struct {
	JSONLines       int64 // the activities as JSON lines, uncompressed
	JSONLinesZstd   int64 // JSON lines, zstd default level, 1 MiB blocks
	Rows            int64 // blocks of records as rows (apicall, details), zstd
	RowsDict        int64 // the same in 16 KiB blocks with a trained dictionary
	Columns         int64 // archive blocks: details split by key, a zstd frame per column
	ColumnsOneFrame int64 // the same blocks, one zstd frame per block
	ColumnsDict     int64 // archive blocks with a trained dictionary
}

// MeasureLayouts compresses acts, which are newest first, under each layout
// with blocks of blockBytes of records.
func MeasureLayouts(acts []Activity, blockBytes int) (LayoutSizes, error) {
	var ls LayoutSizes
	enc := arcfmt.Encoder()
	var buf, out []byte
	flushJSON := func() {
		out = enc.EncodeAll(buf, out[:0])
		ls.JSONLinesZstd += int64(len(out))
		buf = buf[:0]
	}
	for i := range acts {
		b, err := acts[i].MarshalJSON()
		if err != nil {
			return ls, err
		}
		ls.JSONLines += int64(len(b)) + 1
		buf = append(append(buf, b...), '\n')
		if len(buf) >= 1<<20 {
			flushJSON()
		}
	}
	flushJSON()

	// Row and column blocks, the same records per block.
	var rowBlocks, colBlocks [][]byte
	var colCuts [][]int
	var bb arcfmt.BlockBuilder
	var rows []byte
	flush := func() {
		rowBlocks = append(rowBlocks, slices.Clone(rows))
		colBlocks = append(colBlocks, bb.Encode(nil))
		colCuts = append(colCuts, slices.Clone(bb.Cuts()))
		rows = rows[:0]
		bb.Reset()
	}
	for i := range acts {
		a := &acts[i]
		// Labels are in the index in both layouts.
		rows = codec.AppendString(rows, a.APICall)
		rows = codec.AppendBytes(rows, a.Details)
		bb.Add(a.APICall, a.Details)
		if bb.Size() >= blockBytes {
			flush()
		}
	}
	if bb.Len() > 0 {
		flush()
	}
	size := func(blocks [][]byte, e *zstd.Encoder) int64 {
		var n int64
		for _, b := range blocks {
			out = e.EncodeAll(b, out[:0])
			n += int64(len(out))
		}
		return n
	}
	ls.Rows = size(rowBlocks, enc)
	ls.ColumnsOneFrame = size(colBlocks, enc)
	var frames [][]byte
	for i, b := range colBlocks {
		out = arcfmt.CompressParts(out[:0], b, colCuts[i], &frames)
		ls.Columns += int64(len(out))
	}

	// Dictionaries: trained on a sample of small blocks, then used on 16
	// KiB pieces of the row and of the column blocks.
	withDict := func(blocks [][]byte, chunk int) (int64, error) {
		var small [][]byte
		for _, b := range blocks {
			for len(b) > chunk {
				small = append(small, b[:chunk])
				b = b[chunk:]
			}
			small = append(small, b)
		}
		sample := small
		if len(sample) > 2000 {
			sample = sample[:2000]
		}
		d, err := zdict.BuildZstdDict(sample, zdict.Options{MaxDictSize: 112 << 10, HashBytes: 6, ZstdDictID: 1, ZstdLevel: zstd.SpeedDefault})
		if err != nil {
			return 0, err
		}
		e, err := zstd.NewWriter(nil, zstd.WithEncoderDict(d), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return 0, err
		}
		defer e.Close()
		return size(small, e) + int64(len(d)), nil
	}
	var err error
	if ls.RowsDict, err = withDict(rowBlocks, 16<<10); err != nil {
		return ls, err
	}
	if ls.ColumnsDict, err = withDict(colBlocks, 16<<10); err != nil {
		return ls, err
	}
	return ls, nil
}

// ArchiveIndexBytes sums the compressed index sections of the store's
// archives: the index, or (format 3) its parts.
func ArchiveIndexBytes(s *Store) (int64, error) {
	parts, err := ArchiveParts(s)
	if err != nil {
		return 0, err
	}
	return parts["index"] + parts["head"] + parts["dirs"] + parts["groups"] + parts["chunks"], nil
}

// ArchiveParts returns, summed over the store's archives, the compressed
// bytes of each kind of section: blocks, copies (copy blocks), and the
// index, or (format 3) its head, dirs, groups and chunks.
func ArchiveParts(s *Store) (map[string]int64, error) {
	s.mu.RLock()
	arcs := make([]*archive, 0, len(s.archives))
	for _, a := range s.archives {
		arcs = append(arcs, a)
	}
	s.mu.RUnlock()
	out := map[string]int64{}
	for _, a := range arcs {
		_, ft, err := a.acquire(context.Background())
		if err != nil {
			return nil, err
		}
		a.release()
		for k, ss := range map[string][]arcfmt.Section{"blocks": ft.Blocks, "copies": ft.Copies, "groups": ft.Groups, "chunks": ft.Chunks,
			"dirs": ft.Dirs[:], "head": {ft.Head}, "index": {ft.Index}} {
			for _, sec := range ss {
				out[k] += int64(sec.CLen)
			}
		}
	}
	return out, nil
}

// StopSharedS3 stops the SeaweedFS server the S3 tests share, if one ran;
// TestMain calls it.
func StopSharedS3() { stopSharedS3() }
