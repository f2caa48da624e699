package activitystore

import (
	"bytes"
	"sync/atomic"

	"github.com/activitystore/activitystore/internal/lru"
)

// recordEntryBytes is about what the record cache spends on one entry
// besides the record: its map slot, list element and entry.
const recordEntryBytes = 160

// recordCache keeps the records that pages read, by ID, in their pebble
// encoding (record.Append), whether they came from pebble or from an
// archive. A record never changes and an ID is never reused, so an entry
// stays right for as long as it is kept; a record dropped by retention is
// no longer asked for. A nil *recordCache keeps nothing.
type recordCache struct {
	c    *lru.Cache[ID, []byte]
	hits atomic.Int64
}

// newRecordCache returns a cache of at most max bytes, nil when max is not
// positive.
func newRecordCache(max int64) *recordCache {
	if max <= 0 {
		return nil
	}
	return &recordCache{c: lru.New[ID, []byte](max)}
}

// take copies into buf, as record k, the kept record of id(k) for each k
// below n, and returns miss with the k whose record it does not hold
// appended, ascending.
func (rc *recordCache) take(n int, id func(k int) ID, buf *recordBuf, miss []int) []int {
	if rc == nil {
		for k := range n {
			miss = append(miss, k)
		}
		return miss
	}
	hits := 0
	for k := range n {
		if v, ok := rc.c.Get(id(k)); ok {
			buf.put(k, v)
			hits++
		} else {
			miss = append(miss, k)
		}
	}
	rc.hits.Add(int64(hits))
	return miss
}

// add keeps a copy of v as the record of id.
func (rc *recordCache) add(id ID, v []byte) {
	if rc == nil {
		return
	}
	rc.c.Add(id, bytes.Clone(v), int64(len(v))+recordEntryBytes)
}

// stats returns the hits since the cache was made and the bytes it holds.
func (rc *recordCache) stats() (hits, size int64) {
	if rc == nil {
		return 0, 0
	}
	size, _ = rc.c.Size()
	return rc.hits.Load(), size
}
