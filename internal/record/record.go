// Package record is the pebble encoding of one activity: its key (the
// complement of its ID, so that a forward scan is newest first) and its value
// (a version byte, then the labels and details, length-prefixed).
package record

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/activitystore/activitystore/internal/codec"
)

// Version is the first byte of every value. Bump it when the encoding
// changes.
const Version = 1

// Prefix is the first byte of every record key.
const Prefix = 'r'

// Fields are the parts of an activity a value holds; the ID and the time live
// in the key.
type Fields struct {
	Type, UserID, Module, Action, APICall, Resource string
	Details                                         []byte
}

// AppendKey appends the key of the activity with the given 16-byte ID.
func AppendKey(dst []byte, id [16]byte) []byte {
	dst = append(dst, Prefix)
	for _, b := range id {
		dst = append(dst, ^b)
	}
	return dst
}

// KeyID returns the ID of a record key.
func KeyID(k []byte) ([16]byte, bool) {
	var id [16]byte
	if len(k) != 17 || k[0] != Prefix {
		return id, false
	}
	for i := range id {
		id[i] = ^k[i+1]
	}
	return id, true
}

// Append appends the value of f to dst.
func Append(dst []byte, f *Fields) []byte {
	dst = append(dst, Version)
	dst = codec.AppendString(dst, f.Type)
	dst = codec.AppendString(dst, f.UserID)
	dst = codec.AppendString(dst, f.Module)
	dst = codec.AppendString(dst, f.Action)
	dst = codec.AppendString(dst, f.APICall)
	dst = codec.AppendString(dst, f.Resource)
	return codec.AppendBytes(dst, f.Details)
}

// Decode fills f from the value v. The strings and Details of f alias v,
// which must not change afterwards.
func Decode(v []byte, f *Fields) error {
	d := codec.Decoder{B: v}
	if ver := d.Byte(); d.Err == nil && ver != Version {
		return fmt.Errorf("unknown record version %d", ver)
	}
	f.Type = str(d.Bytes())
	f.UserID = str(d.Bytes())
	f.Module = str(d.Bytes())
	f.Action = str(d.Bytes())
	f.APICall = str(d.Bytes())
	f.Resource = str(d.Bytes())
	f.Details = d.Bytes()
	if d.Err != nil {
		return d.Err
	}
	if len(d.B) != 0 {
		return errors.New("trailing bytes after the record")
	}
	return nil
}

// str returns a string sharing b's memory.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
