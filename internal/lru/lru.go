// Package lru is a size-bounded least-recently-used cache, safe for
// concurrent use.
package lru

import (
	"container/list"
	"sync"
)

// Cache holds values up to a total size in bytes, dropping the least
// recently used ones first. A value larger than the whole bound is not kept.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    list.List
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	size int64
}

// New returns a cache bounded to max bytes.
func New[K comparable, V any](max int64) *Cache[K, V] {
	return &Cache[K, V]{max: max, items: make(map[K]*list.Element)}
}

// Get returns the value of k and marks it used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*entry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Contains reports whether k has a value, without marking it used.
func (c *Cache[K, V]) Contains(k K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[k]
	return ok
}

// Add stores v under k, counting size bytes, and evicts older values until
// the cache is within its bound.
func (c *Cache[K, V]) Add(k K, v V, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.size -= e.Value.(*entry[K, V]).size
		c.ll.Remove(e)
		delete(c.items, k)
	}
	if size > c.max {
		return
	}
	c.items[k] = c.ll.PushFront(&entry[K, V]{key: k, val: v, size: size})
	c.size += size
	for c.size > c.max {
		e := c.ll.Back()
		en := e.Value.(*entry[K, V])
		c.ll.Remove(e)
		delete(c.items, en.key)
		c.size -= en.size
	}
}

// RemoveIf drops every value whose key satisfies drop.
func (c *Cache[K, V]) RemoveIf(drop func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.items {
		if drop(k) {
			c.size -= e.Value.(*entry[K, V]).size
			c.ll.Remove(e)
			delete(c.items, k)
		}
	}
}

// Size returns the bytes held and the number of values.
func (c *Cache[K, V]) Size() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, len(c.items)
}
