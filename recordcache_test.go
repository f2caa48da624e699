package activitystore

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecordCache checks that pages keep the records they read and that the
// next pages holding them take them from memory, from pebble and from
// archives alike, with the same answers; that Iter keeps none; that a caller
// changing a page's details changes no later answer; and that the cache
// stays within its bound, or keeps nothing when turned off.
func TestRecordCache(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		archived bool
		bytes    int64
	}{
		{"pebble", false, 0},
		{"archives", true, 0},
		{"pebble/4KiB", false, 4 << 10},
		{"archives/off", true, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := arcOpts()
			o.RecordCacheBytes = c.bytes
			s, err := Open(t.TempDir(), o)
			require.NoError(t, err)
			defer s.Close()
			want := map[ID]Activity{}
			appendAll(t, s, want, copyActs())
			if c.archived {
				require.NoError(t, s.Compact(ctx))
			}
			stats := func() Stats {
				st, err := s.Stats(ctx)
				require.NoError(t, err)
				return st
			}
			if c.archived {
				require.Equal(t, 5*400, stats().ArchivedActivities, "days 0 to 4 archived")
			}
			// page returns the newest limit activities before day 4 (on
			// archives when archived) and what reading them cost.
			page := func(limit int) (acts []Activity, hits, reads int64) {
				t.Helper()
				before := stats()
				p, err := s.Query().Until(day(4)).Limit(limit).All(ctx)
				require.NoError(t, err)
				require.Len(t, p.Activities, limit)
				for _, a := range p.Activities {
					requireSame(t, want[a.ID], a)
				}
				after := stats()
				return p.Activities, after.RecordCacheHits - before.RecordCacheHits, after.RecordReads - before.RecordReads
			}
			pebbleReads := func(n int64) int64 {
				if c.archived {
					return 0
				}
				return n
			}

			ids, err := walkIDs(ctx, s.Query().Until(day(4)).Limit(100))
			require.NoError(t, err)
			require.Len(t, ids, 100)
			st := stats()
			assert.Zero(t, st.RecordCacheBytes, "Iter keeps no record")

			_, hits, reads := page(10)
			assert.Zero(t, hits)
			assert.Equal(t, pebbleReads(10), reads)
			acts, hits, reads := page(50)
			switch {
			case c.bytes == -1:
				assert.Zero(t, hits)
				assert.Zero(t, stats().RecordCacheBytes)
				return
			case c.bytes > 0:
				assert.LessOrEqual(t, stats().RecordCacheBytes, c.bytes)
				assert.Positive(t, stats().RecordCacheBytes)
				return
			}
			assert.Equal(t, int64(10), hits, "the first 10 kept")
			assert.Equal(t, pebbleReads(40), reads)

			for i := range acts {
				for j := range acts[i].Details {
					acts[i].Details[j] = 'x'
				}
			}
			_, hits, reads = page(50)
			assert.Equal(t, int64(50), hits, "every record kept")
			assert.Zero(t, reads)

			before := stats().RecordCacheHits
			got, err := s.Get(ctx, acts[7].ID)
			require.NoError(t, err)
			requireSame(t, want[acts[7].ID], got)
			assert.Equal(t, before+1, stats().RecordCacheHits, "Get takes a kept record")
		})
	}
}

func TestRecordCacheBytesInvalid(t *testing.T) {
	_, err := Open(t.TempDir(), &Options{RecordCacheBytes: -2})
	require.True(t, errors.Is(err, ErrInvalidOptions), "%v", err)
	require.ErrorContains(t, err, "RecordCacheBytes")
}
