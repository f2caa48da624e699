package lru

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[int, string](10)
	c.Add(1, "a", 4)
	c.Add(2, "b", 4)
	_, ok := c.Get(1) // 1 is now newer than 2
	require.True(t, ok)
	c.Add(3, "c", 4) // over 10: drops 2
	_, ok = c.Get(2)
	require.False(t, ok)
	v, ok := c.Get(1)
	require.True(t, ok)
	require.Equal(t, "a", v)
	size, n := c.Size()
	require.Equal(t, int64(8), size)
	require.Equal(t, 2, n)

	c.Add(4, "too big", 11)
	_, ok = c.Get(4)
	require.False(t, ok)

	c.Add(1, "a2", 2) // replace
	v, _ = c.Get(1)
	require.Equal(t, "a2", v)
	size, _ = c.Size()
	require.Equal(t, int64(6), size)

	c.RemoveIf(func(k int) bool { return k == 1 })
	_, ok = c.Get(1)
	require.False(t, ok)
	size, n = c.Size()
	require.Equal(t, int64(4), size)
	require.Equal(t, 1, n)
}

type benchKey struct {
	p *int
	i int
	s string
}

// BenchmarkGet looks up values that are in the cache, the common case of a
// query reading sealed pieces: one goroutine, and one per CPU.
func BenchmarkGet(b *testing.B) {
	c := New[benchKey, any](1 << 30)
	p := new(int)
	keys := make([]benchKey, 4096)
	for i := range keys {
		keys[i] = benchKey{p, -1, "user-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))}
		c.Add(keys[i], i, 100)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Get(keys[i&4095])
			i += 7
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Get(keys[i&4095])
				i += 7
			}
		})
	})
}

// TestContainsDoesNotMarkUsed checks that Contains answers without making a
// value newer: the value it looked at is still the first dropped.
func TestContainsDoesNotMarkUsed(t *testing.T) {
	c := New[int, string](8)
	c.Add(1, "a", 4)
	c.Add(2, "b", 4)
	require.True(t, c.Contains(1))
	require.False(t, c.Contains(3))
	c.Add(3, "c", 4) // drops 1, the least recently used despite Contains
	require.False(t, c.Contains(1))
	require.True(t, c.Contains(2))
	require.True(t, c.Contains(3))
}
