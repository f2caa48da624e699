package activitystore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("activitystore: store is closed")

	// ErrLocked is returned by Open when another Store, in this process or
	// another, has the directory open.
	ErrLocked = errors.New("activitystore: directory is locked by another store")

	// ErrInvalidActivity is wrapped by the *ValidationError Append returns for
	// an activity it refuses.
	ErrInvalidActivity = errors.New("activitystore: invalid activity")

	// ErrInvalidQuery is returned for a query that cannot be run: a limit out
	// of range, a negative skip, an inverted time range, a malformed cursor.
	ErrInvalidQuery = errors.New("activitystore: invalid query")

	// ErrInvalidID is returned by ParseID for text that is not an activity ID.
	ErrInvalidID = errors.New("activitystore: invalid ID")

	// ErrNotFound is returned by Get when no activity has the ID.
	ErrNotFound = errors.New("activitystore: activity not found")

	// ErrNoStore is returned by Open with Options.MustExist for a directory
	// that holds no store.
	ErrNoStore = errors.New("activitystore: no store in the directory")

	// ErrNodeTaken is returned by Open when another store holds the node
	// number (Options.Node) in the bucket (Options.S3).
	ErrNodeTaken = errors.New("activitystore: the node number is taken by another store in the bucket")

	// ErrUnavailable wraps the error of a request to the archive bucket
	// that kept failing (network errors, timeouts, 5xx answers) until its
	// context's deadline or S3Options.RetryFor.
	ErrUnavailable = errors.New("activitystore: the archive bucket is unavailable")

	// ErrReadOnly is returned by the writes of a store opened with
	// OpenReader.
	ErrReadOnly = errors.New("activitystore: the store is read-only")

	// ErrWriteFailed is wrapped by the error of every write (Append,
	// sealing, Compact, DropBefore, Backup) in flight when a write or sync
	// of pebble's log failed, for example with EIO or ENOSPC, and of every
	// write after it. The store cannot tell what of the failed batches
	// reached the disk, so it takes no more writes until it is closed and
	// opened again. Reads go on and never show a failed Append; every
	// acknowledged activity is there after the reopen, and each failed
	// batch whole or not at all. Store.WriteErr reports it.
	ErrWriteFailed = errors.New("activitystore: a write to disk failed; the store takes no more writes until it is opened again")

	// ErrInvalidOptions is returned by Open for options that cannot work.
	ErrInvalidOptions = errors.New("activitystore: invalid options")

	// ErrCorrupt is the class of every error about data on disk that is not
	// what the store wrote: a bad checksum, an undecodable record or bitmap,
	// indexes that disagree with records. Test with errors.Is.
	ErrCorrupt = errors.New("activitystore: corrupt data")
)

// ValidationError says which activity of an Append batch was refused and why.
// It wraps ErrInvalidActivity.
type ValidationError struct {
	Index  int    // position of the activity in the batch, from 0
	Field  string // JSON name of the offending field, e.g. "type", "details"
	Reason string // what is wrong with it
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("activitystore: invalid activity at index %d: field %q: %s", e.Index, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidActivity.
func (e *ValidationError) Unwrap() error { return ErrInvalidActivity }

// QueryError says which part of a query is wrong. It wraps ErrInvalidQuery.
type QueryError struct {
	Field  string // the builder setting, e.g. "limit", "since", "cursor"
	Reason string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("activitystore: invalid query: %s: %s", e.Field, e.Reason)
}

// Unwrap returns ErrInvalidQuery.
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

// CorruptionError names where corrupt data was found. It wraps ErrCorrupt.
type CorruptionError struct {
	Where string // the segment, key or file
	Err   error  // what was wrong; may be nil
}

func (e *CorruptionError) Error() string {
	if e.Err == nil {
		return "activitystore: corrupt data in " + e.Where
	}
	return "activitystore: corrupt data in " + e.Where + ": " + e.Err.Error()
}

// Unwrap returns ErrCorrupt and the underlying cause.
func (e *CorruptionError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

func corruptf(where string, format string, args ...any) error {
	return &CorruptionError{Where: where, Err: fmt.Errorf(format, args...)}
}

// VerifyError lists every disagreement Verify found between records and
// indexes. It wraps ErrCorrupt.
type VerifyError struct {
	Problems []string
}

func (e *VerifyError) Error() string {
	const show = 20
	var b strings.Builder
	fmt.Fprintf(&b, "activitystore: verify found %d problem(s)", len(e.Problems))
	for i, p := range e.Problems {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-show)
			break
		}
		b.WriteString("; ")
		b.WriteString(p)
	}
	return b.String()
}

// Unwrap returns ErrCorrupt.
func (e *VerifyError) Unwrap() error { return ErrCorrupt }

// clipped returns s quoted, cut to its first 64 bytes when longer, so that
// an error never echoes a huge input whole.
func clipped(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:64], len(s))
}
