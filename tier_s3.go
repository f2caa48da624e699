package activitystore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options put a store's archives in an S3-compatible bucket (AWS S3,
// SeaweedFS, MinIO, Ceph) instead of a local folder. A store writes its
// objects under Prefix/node-<Options.Node>/ and touches nothing else in the
// bucket.
type S3Options struct {
	// Endpoint is the server's host and port, such as "s3.amazonaws.com" or
	// "127.0.0.1:8333". The default is AWS_ENDPOINT_URL_S3 or
	// AWS_ENDPOINT_URL (their host part), else "s3.amazonaws.com".
	Endpoint string
	// Insecure uses plain HTTP instead of HTTPS. An endpoint variable that
	// starts with http:// sets it too.
	Insecure bool
	// Bucket is the bucket's name; it must exist.
	Bucket string
	// Prefix is the folder inside the bucket, without slashes at either
	// end; empty is the bucket's root.
	Prefix string
	// Region is the bucket's region; the default is AWS_REGION, else the
	// server's.
	Region string
	// AccessKey, SecretKey and SessionToken are the credentials. When
	// AccessKey is empty they come from AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
	AccessKey, SecretKey, SessionToken string
	// RetryFor is how long a failed request (a network error, a timeout, a
	// 5xx answer) is retried, with backoff, when its context has no
	// deadline; with a deadline, the deadline bounds the retries. The
	// default is 30 seconds.
	RetryFor time.Duration
	// CacheDir, when set, is a local folder that keeps the ranges read from
	// the bucket (archive footers, indexes and blocks), up to CacheBytes
	// (default 1 GiB); the least recently used go first. The memory cache
	// (Options.CacheBytes) comes before it.
	CacheDir   string
	CacheBytes int64
	// Transport, when set, carries the HTTP requests.
	Transport http.RoundTripper
}

// ParseS3URL parses an archive location of the form s3://bucket/prefix into
// S3Options; the rest of the options come from the AWS_* environment
// variables (see S3Options).
func ParseS3URL(u string) (*S3Options, error) {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "s3" || p.Host == "" || p.RawQuery != "" || p.User != nil {
		return nil, fmt.Errorf("%w: archive location %q is not s3://bucket/prefix", ErrInvalidOptions, u)
	}
	return &S3Options{Bucket: p.Host, Prefix: strings.Trim(p.Path, "/")}, nil
}

// withDefaults fills the options from the environment.
func (o S3Options) withDefaults() (S3Options, error) {
	if o.Bucket == "" {
		return o, fmt.Errorf("%w: S3.Bucket is empty", ErrInvalidOptions)
	}
	if strings.Contains(o.Prefix, "//") || strings.HasPrefix(o.Prefix, "/") || strings.HasSuffix(o.Prefix, "/") {
		return o, fmt.Errorf("%w: S3.Prefix %q has a slash at an end or two in a row", ErrInvalidOptions, o.Prefix)
	}
	if o.Endpoint == "" {
		ep := os.Getenv("AWS_ENDPOINT_URL_S3")
		if ep == "" {
			ep = os.Getenv("AWS_ENDPOINT_URL")
		}
		if ep != "" {
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" {
				return o, fmt.Errorf("%w: AWS_ENDPOINT_URL %q is not a URL", ErrInvalidOptions, ep)
			}
			o.Endpoint, o.Insecure = u.Host, o.Insecure || u.Scheme == "http"
		} else {
			o.Endpoint = "s3.amazonaws.com"
		}
	}
	if o.Region == "" {
		o.Region = os.Getenv("AWS_REGION")
	}
	if o.AccessKey == "" {
		o.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
		o.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
		o.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
	}
	if o.RetryFor == 0 {
		o.RetryFor = 30 * time.Second
	}
	if o.RetryFor < 0 {
		return o, fmt.Errorf("%w: S3.RetryFor %v is negative", ErrInvalidOptions, o.RetryFor)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 1 << 30
	}
	if o.CacheBytes < 0 {
		return o, fmt.Errorf("%w: S3.CacheBytes %d is negative", ErrInvalidOptions, o.CacheBytes)
	}
	return o, nil
}

// s3Tier keeps archives as objects under one prefix of a bucket. An object
// is written to a local staging file first, then uploaded in one PUT with
// its MD5 (which the server checks) and checked again by size and ETag.
type s3Tier struct {
	c        *minio.Client
	bucket   string
	prefix   string // ends with "/"
	stage    string // folder of the staging files
	fs       vfs.FS
	retryFor time.Duration
	cache    *diskCache
	endpoint string // names the server in the disk cache's keys
	hook     func(step string)
	gets     *atomic.Int64 // range reads sent to the server; nil: not counted
}

// cached is the disk cache's key of object key: the server and bucket too,
// so that one cache folder may serve several.
func (t *s3Tier) cached(key string) string { return t.endpoint + "/" + t.bucket + "/" + key }

// newS3Client makes a minio client from filled options. It does one
// attempt per call: the tier retries itself, within the caller's deadline.
func newS3Client(o S3Options) (*minio.Client, error) {
	var creds *credentials.Credentials
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	} else {
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds: creds, Secure: !o.Insecure, Region: o.Region, Transport: o.Transport,
		BucketLookup: minio.BucketLookupPath, MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: S3 endpoint %q: %v", ErrInvalidOptions, o.Endpoint, err)
	}
	return c, nil
}

func newS3Tier(o S3Options, node int, stage string, fs vfs.FS) (*s3Tier, error) {
	c, err := newS3Client(o)
	if err != nil {
		return nil, err
	}
	t := &s3Tier{c: c, bucket: o.Bucket, prefix: nodePrefix(o.Prefix, node), stage: stage, fs: fs, retryFor: o.RetryFor, endpoint: o.Endpoint, gets: new(atomic.Int64)}
	if o.CacheDir != "" {
		if t.cache, err = openDiskCache(o.CacheDir, o.CacheBytes); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// nodePrefix is the folder of node's objects under prefix.
func nodePrefix(prefix string, node int) string {
	return path.Join(prefix, fmt.Sprintf("node-%d", node)) + "/"
}

// uncached returns t without its disk cache, if it has one.
func uncached(t tier) tier {
	if st, ok := t.(*s3Tier); ok && st.cache != nil {
		c := *st
		c.cache = nil
		return &c
	}
	return t
}

func (t *s3Tier) where(name string) string { return "s3://" + t.bucket + "/" + t.prefix + name }

// retry runs fn until it succeeds, fails for good, or the time is up: the
// context's deadline, or retryFor when it has none. Waits double from 50 ms
// to 2 s.
func (t *s3Tier) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.retryFor)
		defer cancel()
	}
	wait := 50 * time.Millisecond
	for attempts := 1; ; attempts++ {
		err := fn(ctx)
		if err == nil || !transient(err) {
			return err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w: %w (gave up after %d attempts: %v)", ErrUnavailable, err, attempts, ctx.Err())
		case <-timer.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// transient reports whether a request that failed with err may work if
// tried again.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, os.ErrNotExist) {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.StatusCode != 0 {
		return er.StatusCode >= 500 || er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests ||
			er.Code == "BadDigest" || er.Code == "IncompleteBody"
	}
	return true // network errors, timeouts of one attempt
}

// notExist maps S3's "no such key" to os.ErrNotExist.
func notExist(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket") {
		return fmt.Errorf("%w: %v", os.ErrNotExist, err)
	}
	return err
}

func (t *s3Tier) create(_ context.Context, name string) (tierFile, error) {
	if err := t.fs.MkdirAll(t.stage, 0o755); err != nil {
		return nil, fmt.Errorf("activitystore: cannot create %s: %w", t.stage, err)
	}
	p := filepath.Join(t.stage, name+".upload")
	f, err := t.fs.Create(p, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot create %s: %w", p, err)
	}
	return &s3File{File: f, t: t, name: name, file: p, md5: md5.New()}, nil
}

// s3File is an archive being written to its staging file, hashing as it
// goes.
type s3File struct {
	vfs.File
	t      *s3Tier
	name   string
	file   string // the staging file
	md5    hash.Hash
	n      int64
	closed bool
	put    bool // the object may exist
	done   bool
}

func (f *s3File) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.md5.Write(p[:n])
	f.n += int64(n)
	return n, err
}

func (f *s3File) path() string { return f.file }

// Sync is a no-op: the staging file only needs to last until the upload.
func (f *s3File) Sync() error { return nil }

// maxSinglePut is the largest object uploaded in one PUT, S3's limit.
const maxSinglePut = 5 << 30

func (f *s3File) commit(ctx context.Context, size int64) error {
	f.closed = true
	if err := f.File.Close(); err != nil {
		return fmt.Errorf("activitystore: cannot write %s: %w", f.file, err)
	}
	if f.n != size {
		return fmt.Errorf("activitystore: %s: wrote %d bytes, expected %d", f.file, f.n, size)
	}
	sum := hex.EncodeToString(f.md5.Sum(nil))
	key := f.t.prefix + f.name
	where := f.t.where(f.name)
	f.put = true
	err := f.t.retry(ctx, func(ctx context.Context) error {
		r, err := f.t.fs.Open(f.file)
		if err != nil {
			return fmt.Errorf("cannot open %s: %w", f.file, err)
		}
		defer r.Close()
		_, err = f.t.c.PutObject(ctx, f.t.bucket, key, io.NewSectionReader(r, 0, size), size, minio.PutObjectOptions{
			ContentType: "application/octet-stream", SendContentMd5: true, DisableMultipart: size <= maxSinglePut,
		})
		if err != nil {
			return err
		}
		f.t.step("uploaded")
		st, err := f.t.c.StatObject(ctx, f.t.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			return err
		}
		etag := strings.Trim(st.ETag, `"`)
		if st.Size != size || (!strings.Contains(etag, "-") && !strings.EqualFold(etag, sum)) {
			return fmt.Errorf("%w: the bucket holds %d bytes with ETag %s, uploaded %d bytes with MD5 %s", errUploadMismatch, st.Size, etag, size, sum)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("activitystore: cannot upload %s: %w", where, err)
	}
	f.done = true
	f.t.fs.Remove(f.file)
	return nil
}

// errUploadMismatch: the object read back is not what was uploaded. It is
// retried like a network error.
var errUploadMismatch = errors.New("upload mismatch")

func (f *s3File) abort() {
	if f.done {
		return
	}
	if !f.closed {
		f.File.Close()
	}
	f.t.fs.Remove(f.file)
	if f.put {
		ctx, cancel := context.WithTimeout(context.Background(), f.t.retryFor)
		defer cancel()
		f.t.remove(ctx, f.name) // at worst an orphan the next Open removes
	}
}

func (t *s3Tier) step(s string) {
	if t.hook != nil {
		t.hook(s)
	}
}

func (t *s3Tier) open(ctx context.Context, name string) (tierObject, error) {
	key := t.prefix + name
	if t.cache != nil {
		if n, ok := t.cache.size(t.cached(key)); ok {
			return &s3Object{t: t, key: key, n: n}, nil
		}
	}
	size, err := t.stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if t.cache != nil {
		t.cache.setSize(t.cached(key), size)
	}
	return &s3Object{t: t, key: key, n: size}, nil
}

// s3Object reads one object by range GETs, through the disk cache if any.
type s3Object struct {
	t   *s3Tier
	key string
	n   int64
}

func (o *s3Object) size() int64  { return o.n }
func (o *s3Object) close() error { return nil }

func (o *s3Object) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if off < 0 || off >= o.n {
		return 0, io.EOF
	}
	want := p
	if off+int64(len(p)) > o.n {
		want = p[:o.n-off]
	}
	if o.t.cache != nil && o.t.cache.get(o.t.cached(o.key), off, want) {
		return o.done(len(want), len(p))
	}
	if o.t.gets != nil {
		o.t.gets.Add(1)
	}
	err := o.t.retry(ctx, func(ctx context.Context) error {
		var opts minio.GetObjectOptions
		if err := opts.SetRange(off, off+int64(len(want))-1); err != nil {
			return err
		}
		obj, err := o.t.c.GetObject(ctx, o.t.bucket, o.key, opts)
		if err != nil {
			return notExist(err)
		}
		defer obj.Close()
		if _, err := io.ReadFull(obj, want); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("object ended early: %w", err)
			}
			return notExist(err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if o.t.cache != nil {
		o.t.cache.put(o.t.cached(o.key), off, want)
	}
	return o.done(len(want), len(p))
}

func (o *s3Object) done(n, asked int) (int, error) {
	if n < asked {
		return n, io.EOF
	}
	return n, nil
}

func (t *s3Tier) stat(ctx context.Context, name string) (int64, error) {
	var size int64
	err := t.retry(ctx, func(ctx context.Context) error {
		st, err := t.c.StatObject(ctx, t.bucket, t.prefix+name, minio.StatObjectOptions{})
		if err != nil {
			return notExist(err)
		}
		size = st.Size
		return nil
	})
	return size, err
}

func (t *s3Tier) remove(ctx context.Context, name string) error {
	key := t.prefix + name
	if t.cache != nil {
		t.cache.drop(t.cached(key))
	}
	return t.retry(ctx, func(ctx context.Context) error {
		return t.c.RemoveObject(ctx, t.bucket, key, minio.RemoveObjectOptions{})
	})
}

func (t *s3Tier) list(ctx context.Context) ([]string, error) {
	var names []string
	err := t.retry(ctx, func(ctx context.Context) error {
		names = names[:0]
		for o := range t.c.ListObjectsIter(ctx, t.bucket, minio.ListObjectsOptions{Prefix: t.prefix, Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
			if name := strings.TrimPrefix(o.Key, t.prefix); !strings.Contains(name, "/") {
				names = append(names, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot list s3://%s/%s: %w", t.bucket, t.prefix, err)
	}
	return names, nil
}

// ownerObject is the object in a node's folder that names the store holding
// the node number.
const ownerObject = "owner"

// claimNode makes sure the node's folder in the bucket belongs to this
// store: it writes the store's identity there if the folder has none, and
// fails with ErrNodeTaken if it holds another's. Two stores claiming one
// number at the same instant can both pass; the check is for mistakes in
// configuration, not a lock.
func (s *Store) claimNode(ctx context.Context, t *s3Tier) error {
	ident, closer, err := s.db.Get(metaIdent)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		var b [16]byte
		rand.Read(b[:])
		ident = []byte(hex.EncodeToString(b[:]))
		if err := s.set(metaIdent, ident); err != nil {
			return fmt.Errorf("activitystore: cannot record the store's identity: %w", err)
		}
	case err != nil:
		return err
	default:
		ident = bytes.Clone(ident)
		closer.Close()
	}
	key := t.prefix + ownerObject
	read := func() ([]byte, error) {
		var got []byte
		err := t.retry(ctx, func(ctx context.Context) error {
			obj, err := t.c.GetObject(ctx, t.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return notExist(err)
			}
			defer obj.Close()
			got, err = io.ReadAll(io.LimitReader(obj, 1024))
			return notExist(err)
		})
		return got, err
	}
	got, err := read()
	if errors.Is(err, os.ErrNotExist) {
		err = t.retry(ctx, func(ctx context.Context) error {
			_, err := t.c.PutObject(ctx, t.bucket, key, bytes.NewReader(ident), int64(len(ident)), minio.PutObjectOptions{ContentType: "text/plain", SendContentMd5: true})
			return err
		})
		if err != nil {
			return fmt.Errorf("activitystore: cannot claim %s: %w", t.where(ownerObject), err)
		}
		got, err = read()
	}
	if err != nil {
		return fmt.Errorf("activitystore: cannot read %s: %w", t.where(ownerObject), err)
	}
	if !bytes.Equal(got, ident) {
		return fmt.Errorf("%w: %s names store %.32q, this store is %s", ErrNodeTaken, t.where(ownerObject), got, ident)
	}
	return nil
}
