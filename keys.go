package activitystore

import (
	"encoding/binary"

	"github.com/activitystore/activitystore/internal/record"
)

// The key space of the pebble database, every prefix in one place. Windows
// are big-endian uint64 window numbers, so keys of one prefix sort oldest
// window first.
//
//	'r' ^ID                      -> record (internal/record); newest first
//	'd' window                   -> nothing: the window has unsealed activities
//	'h' window                   -> descriptor of the window's sealed segment
//	's' window gen field value   -> roaring bitmap of the value's ordinals
//	's' window gen 'i' chunk     -> a chunk of the sealed segment's ID column
//
// gen (uint64) is a sequence number taken at each seal: a reader that holds
// an older descriptor finds its keys gone instead of reading the new ones.
//
//	'u' len user ^window gen     -> a user's entry in one sealed segment (segment_sealed.go):
//	                                its IDs and copies of its records when it has few
//	                                there, else a mark; a user's entries are adjacent,
//	                                newest window first, so one scan reads many windows
//	'n' window seq               -> IDs of one append batch in the window since its
//	                                segment was last written (sealed or checkpointed)
//	'a' window                   -> record of the window's archive file
//	'm' name                     -> store metadata
const (
	prefixRecord     = record.Prefix
	prefixDirty      = 'd'
	prefixDescriptor = 'h'
	prefixSegment    = 's'
	prefixUser       = 'u'
	prefixLog        = 'n'
	prefixArchive    = 'a'
	prefixMeta       = 'm'
)

// partIDs is the byte after the window in the keys of ID column chunks; the
// bitmap keys use '0'+field.
const partIDs = 'i'

var (
	metaFormat = []byte("mformat") // format version of the store
	metaWidth  = []byte("mwidth")  // segment width in ns
	metaSeq    = []byte("mseq")    // sequence numbers below this may have been used
	metaIdent  = []byte("mident")  // random identity of the store, claimed in a bucket
	metaTier   = []byte("mtier")   // where the archives are: absent for a folder, else s3://bucket/prefix/node-N/
	metaNode   = []byte("mnode")   // the node number in the store's IDs; absent: 0
)

// storeFormat is the on-disk format version. Bump it when keys or values
// change in a way older code cannot read. Format 1 kept each sealed segment
// as one value per field; Open converts such a store by marking those
// windows dirty, so they are rebuilt from their records once.
const storeFormat = 2

func recordKey(dst []byte, id ID) []byte { return record.AppendKey(dst, id) }

func keyID(k []byte) (ID, bool) {
	id, ok := record.KeyID(k)
	return ID(id), ok
}

// windowKey returns prefix followed by window w.
func windowKey(prefix byte, w int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefix}, uint64(w))
}

// keyWindow returns the window of a key made by windowKey, and false when k
// has another length.
func keyWindow(k []byte) (int64, bool) {
	if len(k) != 9 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k[1:])), true
}

// bitmapKey returns the key of the bitmap of value v of field f in the
// sealed segment of window w.
func bitmapKey(dst []byte, w int64, gen uint64, f field, v string) []byte {
	dst = append(dst, prefixSegment)
	dst = binary.BigEndian.AppendUint64(dst, uint64(w))
	dst = binary.BigEndian.AppendUint64(dst, gen)
	dst = append(dst, '0'+byte(f))
	return append(dst, v...)
}

// fieldPrefix returns the prefix of the bitmap keys of field f of window w.
func fieldPrefix(w int64, gen uint64, f field) []byte { return bitmapKey(nil, w, gen, f, "") }

// chunkKey returns the key of chunk c of the ID column of window w.
func chunkKey(dst []byte, w int64, gen uint64, c int) []byte {
	dst = append(dst, prefixSegment)
	dst = binary.BigEndian.AppendUint64(dst, uint64(w))
	dst = binary.BigEndian.AppendUint64(dst, gen)
	dst = append(dst, partIDs)
	return binary.BigEndian.AppendUint32(dst, uint32(c))
}

// userPrefix returns the prefix of the user keys of user v: its length
// first, so that no user's keys fall among another's.
func userPrefix(dst []byte, v string) []byte {
	dst = append(dst, prefixUser)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// userKey returns the key of user v's entry in the sealed segment of
// window w and generation gen. Newer windows sort first.
func userKey(dst []byte, v string, w int64, gen uint64) []byte {
	dst = userPrefix(dst, v)
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(w))
	return binary.BigEndian.AppendUint64(dst, gen)
}

// userKeyParts returns the user, window and generation of a user key, and
// false when k is not one.
func userKeyParts(k []byte) (v []byte, w int64, gen uint64, ok bool) {
	if len(k) < 2 || k[0] != prefixUser {
		return nil, 0, 0, false
	}
	n, m := binary.Uvarint(k[1:])
	if m <= 0 || n > uint64(len(k)) || uint64(len(k)-1-m) != n+16 {
		return nil, 0, 0, false
	}
	v = k[1+m : 1+m+int(n)]
	rest := k[1+m+int(n):]
	return v, int64(^binary.BigEndian.Uint64(rest)), binary.BigEndian.Uint64(rest[8:]), true
}

// logKey returns the key of the append log entry of window w whose first
// activity has sequence number seq.
func logKey(w int64, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(windowKey(prefixLog, w), seq)
}

// prefixEnd returns the smallest key above every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i]++; end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
