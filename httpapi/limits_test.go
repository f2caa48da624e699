package httpapi

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLimiter(t *testing.T) {
	l := newLimiter("reads", 2)
	r1, err := l.acquire("alice")
	require.NoError(t, err)
	r2, err := l.acquire("alice")
	require.NoError(t, err)
	_, err = l.acquire("alice")
	var ae *apiError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusTooManyRequests, ae.status)
	require.Equal(t, retryAfter, ae.retryAfter)
	require.Contains(t, ae.msg, "too many reads")

	rb, err := l.acquire("bob")
	require.NoError(t, err, "another principal has places of its own")
	r1()
	r3, err := l.acquire("alice")
	require.NoError(t, err, "a release gives a place back")
	for _, release := range []func(){r2, r3, rb} {
		release()
	}
	require.Empty(t, l.held, "nothing left behind")

	for range 100 { // no authentication: one principal, no limit
		_, err := l.acquire("")
		require.NoError(t, err)
	}
}
