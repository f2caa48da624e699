// Package codec holds the small binary encoding helpers of the store's
// on-disk values: length-prefixed byte strings and a sticky-error decoder.
package codec

import (
	"encoding/binary"
	"errors"
)

// ErrShort is the decoder's error for input that ends too soon or holds a
// length that does not fit.
var ErrShort = errors.New("truncated or malformed value")

// AppendBytes appends the uvarint length of b and b to dst.
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendString appends the uvarint length of s and s to dst.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Decoder reads values appended by the Append functions. The first failure
// sticks: later reads return zero values, and Err reports it.
type Decoder struct {
	B   []byte
	Err error
}

// Uvarint reads one uvarint.
func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Err = ErrShort
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Bytes reads one length-prefixed byte string; the result aliases the input.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Err = ErrShort
		return nil
	}
	b := d.B[:n:n]
	d.B = d.B[n:]
	return b
}

// Fixed reads n raw bytes; the result aliases the input.
func (d *Decoder) Fixed(n int) []byte {
	if d.Err != nil {
		return nil
	}
	if n < 0 || n > len(d.B) {
		d.Err = ErrShort
		return nil
	}
	b := d.B[:n:n]
	d.B = d.B[n:]
	return b
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	b := d.Fixed(1)
	if b == nil {
		return 0
	}
	return b[0]
}
