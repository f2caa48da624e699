package activitystore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// ID identifies one activity. It is assigned by Append, never changes and is
// never reused. IDs order like their activities: by event time, then by
// arrival. The text form is a UUID in the version-7 layout (a 48-bit Unix
// millisecond time first), so clients that expect a UUID accept it.
//
// Layout of the 128 bits: unix milliseconds (48), version 7 (4), the event
// time's nanoseconds within the millisecond, high 12 of 20 bits (12), variant
// 0b10 (2), the low 8 bits of those nanoseconds (8), a sequence number
// (54): the store's node number (Options.Node, 10 bits) and a count of the
// store's own (44 bits). So two stores with different node numbers never
// assign the same ID, and IDs of several stores merge in time order.
type ID [16]byte

// NilID is the zero ID; no activity has it.
var NilID ID

// maxID is above every activity ID.
var maxID = ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

const seqBits = 54
const maxSeq = 1<<seqBits - 1

// countBits is the width of a store's own count within a sequence number;
// the node number takes the bits above it.
const countBits = 44

// MaxNode is the largest node number (Options.Node).
const MaxNode = 1<<(seqBits-countBits) - 1

// Node returns the node number of the store that assigned id.
func (id ID) Node() int { return int(id.seq() >> countBits) }

// maxIDMillis is the last millisecond whose nanoseconds fit an int64.
const maxIDMillis = (1<<63-1)/1_000_000 - 1

// makeID builds the ID of an activity at unix nanoseconds ns with sequence
// number seq.
func makeID(ns int64, seq uint64) ID {
	ms := uint64(ns / 1e6)
	sub := uint64(ns % 1e6) // < 2^20
	hi := ms<<16 | 0x7000 | sub>>8
	lo := uint64(0b10)<<62 | (sub&0xff)<<seqBits | seq&maxSeq
	var id ID
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}

// idFloor returns an ID smaller than the ID of every activity at or after
// unix nanoseconds ns, and larger than those before it. Sequence numbers
// start at 1, so no activity has this ID.
func idFloor(ns int64) ID {
	if ns < 0 {
		return NilID
	}
	return makeID(ns, 0)
}

func (id ID) hi() uint64 { return binary.BigEndian.Uint64(id[:8]) }
func (id ID) lo() uint64 { return binary.BigEndian.Uint64(id[8:]) }

// Compare returns -1, 0 or +1 as id orders before, equal to or after o.
func (id ID) Compare(o ID) int {
	a, b := id.hi(), o.hi()
	if a == b {
		a, b = id.lo(), o.lo()
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// UnixNano returns the event time of the activity as Unix nanoseconds.
func (id ID) UnixNano() int64 {
	hi, lo := id.hi(), id.lo()
	ms := hi >> 16
	sub := (hi&0xfff)<<8 | (lo>>seqBits)&0xff
	return int64(ms)*1e6 + int64(sub)
}

// Time returns the event time of the activity, in UTC.
func (id ID) Time() time.Time { return time.Unix(0, id.UnixNano()).UTC() }

// seq returns the store-wide sequence number in the ID.
func (id ID) seq() uint64 { return id.lo() & maxSeq }

// valid reports whether id has the layout Append gives.
func (id ID) valid() bool {
	sub := (id.hi()&0xfff)<<8 | (id.lo()>>seqBits)&0xff
	return id[6]>>4 == 7 && id[8]>>6 == 0b10 && id.seq() != 0 && sub < 1e6 && id.hi()>>16 <= maxIDMillis
}

// IsZero reports whether id is NilID.
func (id ID) IsZero() bool { return id == NilID }

// String returns the UUID text form, e.g. "0190f3a2-7c1d-7a4b-8c00-000000000001".
func (id ID) String() string {
	var b [36]byte
	return string(id.appendText(b[:0]))
}

// appendText appends the UUID text form to dst.
func (id ID) appendText(dst []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, 36)...)
	b := dst[n:]
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return dst
}

// MarshalText implements encoding.TextMarshaler with the UUID text form.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; see ParseID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the UUID text form returned by ID.String. It accepts upper or
// lower case hex. It returns an error wrapping ErrInvalidID for anything else,
// including UUIDs that are not in the layout this package assigns.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("%w: %s is not a UUID", ErrInvalidID, clipped(s))
	}
	var buf [32]byte
	copy(buf[0:8], s[0:8])
	copy(buf[8:12], s[9:13])
	copy(buf[12:16], s[14:18])
	copy(buf[16:20], s[19:23])
	copy(buf[20:32], s[24:36])
	if _, err := hex.Decode(id[:], buf[:]); err != nil {
		return NilID, fmt.Errorf("%w: %s is not a UUID", ErrInvalidID, clipped(s))
	}
	if !id.valid() {
		return NilID, fmt.Errorf("%w: %s is not an activity ID", ErrInvalidID, clipped(s))
	}
	return id, nil
}
