package main

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLimitListener checks that the listener accepts no more connections
// than its limit until one closes, and that closing one twice frees one
// place.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := limitListener(inner, 1)
	defer ln.Close()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
	}
	c1, err := ln.Accept()
	require.NoError(t, err)
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	notYet := func(what string) {
		select {
		case <-accepted:
			t.Fatal(what)
		case <-time.After(50 * time.Millisecond):
		}
	}
	notYet("a second connection was accepted while the first is open")
	require.NoError(t, c1.Close())
	c1.Close() // twice: still one place
	c2 := <-accepted
	notYet("a double close freed two places")
	require.NoError(t, c2.Close())
	(<-accepted).Close()
}

// TestLimitListenerClose checks that Close ends an Accept waiting for a
// place.
func TestLimitListenerClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := limitListener(inner, 1)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	c1, err := ln.Accept()
	require.NoError(t, err)
	defer c1.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	require.NoError(t, ln.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
