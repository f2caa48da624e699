package activitystore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSealWaitsWhileBusy checks that the background sealer lets a due
// window that is still taking appends wait, checkpointing it meanwhile,
// seals it on the first pass that finds it idle or after maxBusyPasses
// passes, and that sealDue seals it whatever.
func TestSealWaitsWhileBusy(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, &Options{checkpoint: 3})
	at := testBase // a day before the clock's: due
	w := at.UnixNano() / s.width
	add := func() {
		t.Helper()
		mustAppend(t, s, act("user.login", "u", at))
		at = at.Add(time.Second)
	}
	open := func() *segment {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.segs[w]
	}

	add()
	require.NoError(t, s.sealBackground(ctx))
	require.NotNil(t, open(), "first seen: waits a pass")
	add()
	add()
	require.NoError(t, s.sealBackground(ctx))
	seg := open()
	require.NotNil(t, seg, "took appends since: waits")
	seg.mu.RLock()
	assert.Zero(t, seg.logged, "checkpointed while it waits")
	seg.mu.RUnlock()
	require.NoError(t, s.sealBackground(ctx))
	require.Nil(t, open(), "idle for a pass: sealed")

	for range maxBusyPasses {
		add()
		require.NoError(t, s.sealBackground(ctx))
		require.NotNil(t, open())
	}
	add()
	require.NoError(t, s.sealBackground(ctx))
	require.Nil(t, open(), "sealed after waiting maxBusyPasses passes")
	assert.Empty(t, s.sealWait)

	add()
	require.NoError(t, s.sealBackground(ctx))
	require.NotNil(t, open())
	require.Len(t, s.sealWait, 1)
	require.NoError(t, s.sealDue(ctx))
	require.Nil(t, open(), "sealDue does not wait")
	require.NoError(t, s.sealBackground(ctx))
	assert.Empty(t, s.sealWait, "a window sealed elsewhere is forgotten")

	page, err := s.Query().Limit(MaxLimit).All(ctx)
	require.NoError(t, err)
	assert.Len(t, page.Activities, 3+maxBusyPasses+2)
	require.NoError(t, s.Verify(ctx))
}
