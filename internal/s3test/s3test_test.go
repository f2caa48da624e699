package s3test_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/signer"
	"github.com/stretchr/testify/require"

	"github.com/activitystore/activitystore/internal/s3test"
)

func TestServerKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a SeaweedFS server")
	}
	t.Parallel()
	start := time.Now()
	srv := s3test.Start(t)
	t.Logf("started in %v: %s", time.Since(start).Round(time.Millisecond), srv.Endpoint)

	ctx := context.Background()
	c := srv.Client(t)
	bucket := srv.Bucket(t)

	body := make([]byte, 100_000)
	for i := range body {
		body[i] = byte(i * 7)
	}
	_, err := c.PutObject(ctx, bucket, "dir/obj", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
	require.NoError(t, err)

	readRange := func(c *minio.Client, from, to int64) []byte {
		t.Helper()
		opts := minio.GetObjectOptions{}
		require.NoError(t, opts.SetRange(from, to))
		obj, err := c.GetObject(ctx, bucket, "dir/obj", opts)
		require.NoError(t, err)
		defer obj.Close()
		got, err := io.ReadAll(obj)
		require.NoError(t, err)
		return got
	}
	require.Equal(t, body[1000:2001], readRange(c, 1000, 2000))

	srv.Kill()
	killCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = c.StatObject(killCtx, bucket, "dir/obj", minio.StatObjectOptions{})
	require.Error(t, err, "the server is dead")

	start = time.Now()
	srv.Restart(t)
	t.Logf("restarted in %v", time.Since(start).Round(time.Millisecond))

	c = srv.Client(t)
	require.Equal(t, body[99_000:], readRange(c, 99_000, int64(len(body))-1))
	obj, err := c.GetObject(ctx, bucket, "dir/obj", minio.GetObjectOptions{})
	require.NoError(t, err)
	got, err := io.ReadAll(obj)
	require.NoError(t, err)
	require.Equal(t, body, got)

	// Writes work after the restart, to the old bucket and to a new one.
	_, err = c.PutObject(ctx, bucket, "after", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	require.NoError(t, err)
	b2 := srv.Bucket(t)
	require.NotEqual(t, bucket, b2)
	_, err = c.PutObject(ctx, b2, "after", bytes.NewReader([]byte("y")), 1, minio.PutObjectOptions{})
	require.NoError(t, err)

	start = time.Now()
	srv.Stop()
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	srv.Stop() // idempotent
	srv.Kill() // no-op once stopped
}

// TestS3Semantics pins down the SeaweedFS behaviour the repo's S3 code may
// rely on, so a SeaweedFS upgrade that changes it shows up here.
func TestS3Semantics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a SeaweedFS server")
	}
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	b := srv.Bucket(t)

	// do sends a request signed with the server's credentials (payload
	// signed too) and returns the status, headers and body.
	do := func(method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+srv.Endpoint+path, bytes.NewReader(body))
		require.NoError(t, err)
		sum := sha256.Sum256(body)
		req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		req.ContentLength = int64(len(body))
		req = signer.SignV4(*req, srv.AccessKey, srv.SecretKey, "", "us-east-1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, got
	}

	t.Run("ETagIsMD5", func(t *testing.T) {
		for _, body := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("z"), 5<<20+3)} {
			info, err := c.PutObject(ctx, b, "etag", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
			require.NoError(t, err)
			sum := md5.Sum(body)
			require.Equal(t, hex.EncodeToString(sum[:]), info.ETag)
			st, err := c.StatObject(ctx, b, "etag", minio.StatObjectOptions{})
			require.NoError(t, err)
			require.Equal(t, info.ETag, st.ETag)
		}
	})

	t.Run("ContentMD5", func(t *testing.T) {
		body := []byte("content md5")
		good := md5.Sum(body)
		bad := md5.Sum([]byte("other"))
		status, _, _ := do("PUT", "/"+b+"/md5good", body, map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(good[:])})
		require.Equal(t, http.StatusOK, status)
		status, _, resp := do("PUT", "/"+b+"/md5bad", body, map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(bad[:])})
		require.Equal(t, http.StatusBadRequest, status)
		require.Contains(t, string(resp), "<Code>BadDigest</Code>")
		_, err := c.StatObject(ctx, b, "md5bad", minio.StatObjectOptions{})
		require.Equal(t, "NoSuchKey", minio.ToErrorResponse(err).Code)
	})

	t.Run("ChecksumCRC32C", func(t *testing.T) {
		body := []byte("crc32c body")
		var sum [4]byte
		binary.BigEndian.PutUint32(sum[:], crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		good := base64.StdEncoding.EncodeToString(sum[:])
		status, _, _ := do("PUT", "/"+b+"/crc", body, map[string]string{"x-amz-checksum-crc32c": good})
		require.Equal(t, http.StatusOK, status)
		status, hdr, _ := do("HEAD", "/"+b+"/crc", nil, map[string]string{"x-amz-checksum-mode": "ENABLED"})
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, good, hdr.Get("x-amz-checksum-crc32c"))
		status, _, resp := do("PUT", "/"+b+"/crcbad", body, map[string]string{"x-amz-checksum-crc32c": "AAAAAA=="})
		require.Equal(t, http.StatusBadRequest, status)
		require.Contains(t, string(resp), "<Code>BadDigest</Code>")
	})

	t.Run("Range", func(t *testing.T) {
		body := []byte("0123456789012345678901234567890123456789abcdefghij") // 50 bytes
		_, err := c.PutObject(ctx, b, "fifty", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		require.NoError(t, err)
		get := func(from, to int64) ([]byte, error) {
			opts := minio.GetObjectOptions{}
			require.NoError(t, opts.SetRange(from, to))
			obj, err := c.GetObject(ctx, b, "fifty", opts)
			require.NoError(t, err)
			defer obj.Close()
			return io.ReadAll(obj)
		}
		got, err := get(40, 100) // end past the object: clamped
		require.NoError(t, err)
		require.Equal(t, body[40:], got)
		_, err = get(50, 60) // start at or past the end: 416
		require.Equal(t, "InvalidRange", minio.ToErrorResponse(err).Code)
		status, hdr, _ := do("GET", "/"+b+"/fifty", nil, map[string]string{"Range": "bytes=-10"})
		require.Equal(t, http.StatusPartialContent, status)
		require.Equal(t, "bytes 40-49/50", hdr.Get("Content-Range"))
	})

	t.Run("NoSuchBucket", func(t *testing.T) {
		_, err := c.PutObject(ctx, "s3test-missing", "k", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
		require.Equal(t, "NoSuchBucket", minio.ToErrorResponse(err).Code)
	})

	t.Run("IfNoneMatch", func(t *testing.T) {
		status, _, _ := do("PUT", "/"+b+"/once", []byte("1"), map[string]string{"If-None-Match": "*"})
		require.Equal(t, http.StatusOK, status)
		status, _, _ = do("PUT", "/"+b+"/once", []byte("2"), map[string]string{"If-None-Match": "*"})
		require.Equal(t, http.StatusPreconditionFailed, status)
	})

	t.Run("ReadAfterWrite", func(t *testing.T) {
		list := func() []string {
			var keys []string
			for o := range c.ListObjects(ctx, b, minio.ListObjectsOptions{Prefix: "list/", Recursive: true}) {
				require.NoError(t, o.Err)
				keys = append(keys, o.Key)
			}
			return keys
		}
		for _, k := range []string{"list/a-b", "list/a/b", "list/a0", "list/a"} {
			_, err := c.PutObject(ctx, b, k, bytes.NewReader([]byte(k)), int64(len(k)), minio.PutObjectOptions{})
			require.NoError(t, err)
		}
		// Listed at once, in S3's byte order ('-' < '/' < '0').
		require.Equal(t, []string{"list/a", "list/a-b", "list/a/b", "list/a0"}, list())
		require.NoError(t, c.RemoveObject(ctx, b, "list/a/b", minio.RemoveObjectOptions{}))
		require.Equal(t, []string{"list/a", "list/a-b", "list/a0"}, list())
	})
}

// TestLaunch starts servers without a testing.TB, twice in one folder, as
// the bench does.
func TestLaunch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a SeaweedFS server")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "weed") // created by Launch
	ctx := context.Background()
	for round := range 2 {
		srv, err := s3test.Launch(dir)
		require.NoError(t, err)
		require.Equal(t, dir, srv.Dir)
		b, err := srv.MakeBucket(ctx)
		require.NoError(t, err)
		b2, err := srv.MakeBucket(ctx)
		require.NoError(t, err)
		require.NotEqual(t, b, b2)
		c, err := srv.NewClient()
		require.NoError(t, err)
		_, err = c.PutObject(ctx, b, "k", bytes.NewReader([]byte("v")), 1, minio.PutObjectOptions{})
		require.NoError(t, err)
		srv.Stop()
		srv.Stop() // idempotent
		_, err = os.Stat(filepath.Join(dir, fmt.Sprintf("weed-%d.log", round)))
		require.NoError(t, err, "each launch has its own data folder and log")
	}
}
