package activitystore

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// diskCache keeps byte ranges of bucket objects in a local folder, one file
// per range, up to max bytes; the least recently used go first. Objects
// never change under a name, so an entry never goes stale. Each file ends
// with the CRC-32C of its bytes: a damaged file is a miss, never an answer.
// It survives restarts: Open takes the files it finds.
type diskCache struct {
	dir string
	max int64

	mu    sync.Mutex
	used  int64
	lru   *list.List               // of *diskEntry, most recent first
	files map[string]*list.Element // file name -> its element
	sizes map[string]int64         // object key -> size
}

type diskEntry struct {
	file string
	n    int64
}

var crcC = crc32.MakeTable(crc32.Castagnoli)

func openDiskCache(dir string, max int64) (*diskCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("activitystore: cannot create cache folder %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot list cache folder %s: %w", dir, err)
	}
	c := &diskCache{dir: dir, max: max, lru: list.New(), files: map[string]*list.Element{}, sizes: map[string]int64{}}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		if len(e.Name()) != 32 {
			os.Remove(filepath.Join(dir, e.Name())) // a leftover of put
			continue
		}
		c.files[e.Name()] = c.lru.PushBack(&diskEntry{file: e.Name(), n: info.Size()})
		c.used += info.Size()
	}
	c.mu.Lock()
	c.evict()
	c.mu.Unlock()
	return c, nil
}

// fileName is the cache file of the range [off, off+n) of object key.
func (c *diskCache) fileName(key string, off int64, n int) string {
	h := sha256.Sum256([]byte(key + "\x00" + strconv.FormatInt(off, 10) + "\x00" + strconv.Itoa(n)))
	return hex.EncodeToString(h[:16])
}

// get fills p with the range at off of key and reports whether it was
// there, whole and sound.
func (c *diskCache) get(key string, off int64, p []byte) bool {
	name := c.fileName(key, off, len(p))
	c.mu.Lock()
	e, ok := c.files[name]
	if ok {
		c.lru.MoveToFront(e)
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	if err == nil && len(b) == len(p)+4 && binary.BigEndian.Uint32(b[len(p):]) == crc32.Checksum(b[:len(p)], crcC) {
		copy(p, b)
		return true
	}
	c.remove(name)
	return false
}

// put keeps p as the range at off of key. A failure only loses the entry.
func (c *diskCache) put(key string, off int64, p []byte) {
	n := int64(len(p) + 4)
	if n > c.max/4 {
		return
	}
	name := c.fileName(key, off, len(p))
	c.mu.Lock()
	_, ok := c.files[name]
	c.mu.Unlock()
	if ok {
		return
	}
	b := make([]byte, 0, n)
	b = append(b, p...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, crcC))
	p0 := filepath.Join(c.dir, name)
	tmp := p0 + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, p0); err != nil {
		os.Remove(tmp)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[name]; ok {
		return
	}
	c.files[name] = c.lru.PushFront(&diskEntry{file: name, n: n})
	c.used += n
	c.evict()
}

// evict removes the least recently used files until the cache fits. The
// caller holds c.mu.
func (c *diskCache) evict() {
	for c.used > c.max {
		back := c.lru.Back()
		e := back.Value.(*diskEntry)
		c.lru.Remove(back)
		delete(c.files, e.file)
		c.used -= e.n
		os.Remove(filepath.Join(c.dir, e.file))
	}
}

func (c *diskCache) remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.files[name]; ok {
		c.used -= el.Value.(*diskEntry).n
		c.lru.Remove(el)
		delete(c.files, name)
	}
	os.Remove(filepath.Join(c.dir, name))
}

// size returns the size of object key, if known.
func (c *diskCache) size(key string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.sizes[key]
	return n, ok
}

func (c *diskCache) setSize(key string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes[key] = n
}

// drop forgets what it knows of object key that is not in a file: its
// size. Its ranges age out.
func (c *diskCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sizes, key)
}
