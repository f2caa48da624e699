package s3test

import (
	"fmt"
	"os"
	"testing"
)

// TestMain builds the server, if needed, before the tests' timeout starts.
func TestMain(m *testing.M) {
	if err := Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
