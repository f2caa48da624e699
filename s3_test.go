package activitystore

import (
	"testing"
	"time"

	"github.com/activitystore/activitystore/internal/s3test"
)

// s3Server starts a SeaweedFS S3 server for the test and returns options for
// a fresh bucket on it.
func s3Server(t *testing.T) (*s3test.Server, *S3Options) {
	t.Helper()
	srv := s3test.Start(t)
	return srv, &S3Options{
		Endpoint: srv.Endpoint, Insecure: true, Bucket: srv.Bucket(t), Prefix: "acts",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, RetryFor: 5 * time.Second,
	}
}

// TestS3Model is the model test with the archives in a bucket, and a reader
// over the bucket checked against the model at the end.
func TestS3Model(t *testing.T) {
	_, o := s3Server(t)
	ops := *modelOps / 2
	if testing.Short() {
		ops /= 5
	}
	runModel(t, ops, 16, 4<<10, 1, 0, o)
}
