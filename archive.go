package activitystore

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/RoaringBitmap/roaring/v2"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
)

// Archive files: one per archived segment. The format lives in
// internal/archive; ARCHIVE.md documents it.

// ArchiveFormat is the version of the archive file format this package
// writes; it reads that version and the ones before it, from 1.
const ArchiveFormat = arcfmt.Format

// archiveCorrupt returns the corruption error for file name.
func archiveCorrupt(name string, format string, args ...any) error {
	return corruptf("archive "+name, format, args...)
}

// archiveErr turns an error of package archive about file name into the
// store's: corrupt bytes into a *CorruptionError naming the file, an error
// that is already one as it is, a read error wrapped.
func archiveErr(name string, err error) error {
	var ce *arcfmt.CorruptError
	var se *CorruptionError
	switch {
	case errors.As(err, &se):
		return err
	case errors.Is(err, os.ErrNotExist):
		return missing(name, err)
	case errors.As(err, &ce):
		return &CorruptionError{Where: "archive " + name, Err: err}
	}
	return fmt.Errorf("activitystore: reading archive %s: %w", name, err)
}

// missing is the error of archive where that is not there: corruption (the
// store points to it) that is also os.ErrNotExist.
func missing(where string, err error) error {
	return &CorruptionError{Where: "archive " + where, Err: fmt.Errorf("file is missing (%w)", err)}
}

// decodeBitmap decodes and validates a portable roaring bitmap of ordinals
// below n. It never panics on malformed input.
func decodeBitmap(data []byte, n int) (*roaring.Bitmap, error) {
	bm, used, err := decodeBitmapPrefix(data, n, false)
	if err == nil && used != len(data) {
		err = fmt.Errorf("bitmap: %d bytes after it", len(data)-used)
	}
	return bm, err
}

// decodeBitmapPrefix is decodeBitmap for a bitmap followed by other bytes:
// it also returns how many bytes the bitmap took. If alias, the bitmap
// shares data's bytes (copying them before a change), so data must never
// change.
func decodeBitmapPrefix(data []byte, n int, alias bool) (bm *roaring.Bitmap, used int, err error) {
	defer func() {
		if r := recover(); r != nil {
			bm, used, err = nil, 0, fmt.Errorf("bitmap: %v", r)
		}
	}()
	bm = roaring.New()
	var k int64
	if alias {
		k, err = bm.FromBuffer(data)
	} else {
		k, err = bm.ReadFrom(bytes.NewReader(data))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("bitmap: %w", err)
	}
	if err := bm.Validate(); err != nil {
		return nil, 0, fmt.Errorf("bitmap: %w", err)
	}
	if bm.IsEmpty() || uint64(bm.Maximum()) >= uint64(n) {
		return nil, 0, errors.New("bitmap holds ordinals outside the segment")
	}
	return bm, int(k), nil
}

const hexDigits = "0123456789abcdef"
