package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/activitystore/activitystore/internal/s3test"
)

// TestMain builds the S3 tests' server, if needed, before the tests'
// timeout starts.
func TestMain(m *testing.M) {
	if err := s3test.Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
