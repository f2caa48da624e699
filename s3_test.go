package activitystore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	arcfmt "github.com/activitystore/activitystore/internal/archive"
	"github.com/activitystore/activitystore/internal/s3test"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"
)

// s3Server starts a SeaweedFS S3 server of the test's own, for tests that
// stop or kill it, and returns options for a fresh bucket on it. Such tests
// are skipped under -short.
func s3Server(t *testing.T) (*s3test.Server, *S3Options) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts and restarts a server of its own")
	}
	srv := s3test.Start(t)
	return srv, s3Options(t, srv)
}

// s3Options returns options for a fresh bucket on srv.
func s3Options(t *testing.T, srv *s3test.Server) *S3Options {
	t.Helper()
	return &S3Options{
		Endpoint: srv.Endpoint, Insecure: true, Bucket: srv.Bucket(t), Prefix: "acts",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, RetryFor: 5 * time.Second,
	}
}

// shared is one SeaweedFS server for the tests that leave it running, each
// with buckets of its own; TestMain stops it.
var shared struct {
	once sync.Once
	srv  *s3test.Server
	dir  string
	err  error
}

// sharedS3 returns the shared server and options for a fresh bucket on it.
func sharedS3(t *testing.T) (*s3test.Server, *S3Options) {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "activitystore-s3-"); shared.err == nil {
			shared.srv, shared.err = s3test.Launch(shared.dir)
		}
	})
	require.NoError(t, shared.err)
	return shared.srv, s3Options(t, shared.srv)
}

// stopSharedS3 stops the shared server, if it ran.
func stopSharedS3() {
	if shared.srv != nil {
		shared.srv.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// TestS3Model is the model test with the archives in a bucket, and a reader
// over the bucket checked against the model at the end.
func TestS3Model(t *testing.T) {
	t.Parallel()
	_, o := sharedS3(t)
	// Fewer operations than TestModel, and a cache that holds a few blocks:
	// every miss is a request to the server.
	ops := *modelOps / 4
	if testing.Short() {
		ops /= 5
	}
	runModel(t, ops, 16, 64<<10, 1, 0, o)
}

// randomActs returns n random activities of the model's values at times in
// [from, from+span).
func randomActs(r *rand.Rand, n int, from time.Time, span time.Duration) []Activity {
	acts := make([]Activity, n)
	for i := range acts {
		acts[i] = Activity{
			Time: from.Add(time.Duration(r.Int64N(int64(span)))), Type: pick(r, mTypes), UserID: pick(r, mUsers),
			Module: pick(r, mModules), Action: pick(r, mActions), Resource: pick(r, mResources), APICall: "POST /x",
			Details: json.RawMessage(fmt.Sprintf(`{"i":%d}`, r.IntN(1000))),
		}
	}
	return acts
}

// TestS3TwoWritersAndReader has two stores, nodes 1 and 2, archive into one
// bucket, with late arrivals into archived windows and retention, and
// checks a reader over the bucket against a model of both.
func TestS3TwoWritersAndReader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, o := sharedS3(t)
	opts := func(node int) *Options {
		return &Options{S3: o, Node: node, SegmentWidth: 20 * time.Minute, ColdAfter: 30 * time.Minute, blockBytes: 1500}
	}
	w1, _, c1 := openTest(t, opts(1))
	w2, _, c2 := openTest(t, opts(2))
	rd, err := OpenReader(&Options{S3: o, PollEvery: -1, CacheBytes: 64 << 10})
	require.NoError(t, err)
	defer rd.Close()
	n, err := rd.Query().Count(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "an empty bucket")

	r := rand.New(rand.NewPCG(3, 4))
	m := &model{}
	span := 6 * time.Hour
	randQuery := newRandQuery(r, func() time.Duration { return span }, new([]time.Time))
	add := func(w *Store, node int, acts []Activity) {
		ids := mustAppend(t, w, acts...)
		for i := range acts {
			require.Equal(t, node, ids[i].Node())
			acts[i].ID, acts[i].Time = ids[i], acts[i].Time.UTC()
		}
		m.acts = append(m.acts, acts...)
	}
	check := func(what string) {
		require.NoError(t, rd.Refresh(ctx))
		for op := range 150 {
			checkQuery(t, r, rd, m, randQuery, op, 52+r.IntN(48))
		}
		require.NoError(t, rd.Verify(ctx), what)
		st, err := rd.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, len(m.acts), st.Activities, what)
	}
	for round := range 3 {
		// Each round adds activities all over the range: the later rounds
		// merge late arrivals into archived windows, replacing objects.
		add(w1, 1, randomActs(r, 400, testBase, span))
		add(w2, 2, randomActs(r, 300, testBase, span))
		c1.Set(testBase.Add(48 * time.Hour))
		c2.Set(testBase.Add(48 * time.Hour))
		require.NoError(t, w1.Compact(ctx))
		require.NoError(t, w2.Compact(ctx))
		check(fmt.Sprintf("round %d", round))
	}
	// A writer replaces archives (late arrivals) behind the reader's back:
	// with nothing cached, the reader meets the deleted objects, refreshes
	// and answers with the new ones, without a Refresh of its own.
	late := randomActs(r, 40, testBase, span)
	add(w1, 1, late)
	require.NoError(t, w1.Compact(ctx))
	rd.cache.RemoveIf(func(cacheKey) bool { return true })
	all := &modelQuery{limit: MaxLimit}
	page, err := all.build(rd).All(ctx)
	require.NoError(t, err)
	equalActs(t, m.matches(all)[:min(MaxLimit, len(m.acts))], page.Activities, "All after a replacement")
	add(w1, 1, randomActs(r, 40, testBase, span))
	require.NoError(t, w1.Compact(ctx))
	rd.cache.RemoveIf(func(cacheKey) bool { return true })
	var got []Activity
	for a, err := range rd.Query().Iter(ctx) {
		require.NoError(t, err)
		got = append(got, a)
	}
	equalActs(t, m.matches(&modelQuery{}), got, "Iter after a replacement")
	// Deep skips pass over whole windows by their counts.
	for _, mq := range []*modelQuery{{}, {vals: [numFields][]string{fieldType: {mTypes[0], mTypes[2]}}}} {
		n := len(m.matches(mq))
		for _, skip := range []int{0, 1, 100, n / 3, n / 2, n - 31, n - 1, n, n + 5} {
			mq.skip, mq.limit = max(skip, 0), 30
			want := m.matches(mq)
			want = want[min(mq.skip, len(want)):]
			page, err := mq.build(rd).All(ctx)
			require.NoError(t, err)
			equalActs(t, want[:min(30, len(want))], page.Activities, "skip %d of %d", skip, n)
		}
	}
	// Iter applies Skip and Limit to the merge, once.
	for range 20 {
		mq := randQuery()
		mq.skip = r.IntN(60)
		var got []Activity
		for a, err := range mq.build(rd).Iter(ctx) {
			require.NoError(t, err)
			got = append(got, a)
		}
		want := m.matches(mq)
		want = want[min(mq.skip, len(want)):]
		equalActs(t, want[:min(mq.limit, len(want))], got, "Iter %+v", mq)
	}

	// Retention on node 1 deletes its oldest objects; the reader drops them.
	cut := testBase.Add(2 * time.Hour)
	require.NoError(t, w1.DropBefore(ctx, cut))
	w := int64(20 * time.Minute)
	m.acts = slices.DeleteFunc(m.acts, func(a Activity) bool {
		return a.ID.Node() == 1 && (a.Time.UnixNano()/w+1)*w <= cut.UnixNano()
	})
	check("after retention")
	require.Equal(t, storeObjects(w1), s3Objects(t, shared.srv, o, 1), "retention deleted node 1's objects of the dropped windows")
	// The writers' own answers agree with the reader's on their share.
	for _, w := range []*Store{w1, w2} {
		st, err := w.Stats(ctx)
		require.NoError(t, err)
		require.Zero(t, st.Segments, "everything is archived")
	}
	_, err = rd.Append(ctx, act("t", "u", testBase))
	require.ErrorIs(t, err, ErrReadOnly)
	require.ErrorIs(t, rd.Compact(ctx), ErrReadOnly)
}

// TestS3NodeTaken: a second store cannot take a node number another store
// holds in the bucket.
func TestS3NodeTaken(t *testing.T) {
	t.Parallel()
	_, o := sharedS3(t)
	openTest(t, &Options{S3: o, Node: 7})
	_, err := Open(t.TempDir(), &Options{S3: o, Node: 7})
	require.ErrorIs(t, err, ErrNodeTaken)
	s, err := Open(t.TempDir(), &Options{S3: o, Node: 8})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// archivedStore opens a test store with o (cold after an hour), fills days
// days of per activities each and compacts them; it returns the store, its
// folder and its clock.
func archivedStore(t *testing.T, o Options, days, per int) (*Store, string, *testClock) {
	t.Helper()
	o.ColdAfter = time.Hour
	s, dir, clock := openTest(t, &o)
	clock.Set(testBase.Add(5 * 24 * time.Hour))
	fillDays(t, s, days, per)
	require.NoError(t, s.Compact(context.Background()))
	return s, dir, clock
}

// s3Objects lists the object names under the node's folder.
func s3Objects(t *testing.T, srv *s3test.Server, o *S3Options, node int) []string {
	t.Helper()
	var names []string
	prefix := nodePrefix(o.Prefix, node)
	for obj := range srv.Client(t).ListObjectsIter(context.Background(), o.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		require.NoError(t, obj.Err)
		names = append(names, strings.TrimPrefix(obj.Key, prefix))
	}
	slices.Sort(names)
	return names
}

// storeObjects returns the object names of the store's archives, and the
// owner object.
func storeObjects(s *Store) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := []string{ownerObject}
	for _, a := range s.archives {
		names = append(names, a.name)
	}
	slices.Sort(names)
	return names
}

// TestS3ServerDownDuringUpload kills the server before an upload and after
// it (before the store records it): Compact fails and leaves the windows
// hot, and once the server is back the next Compact removes the orphan and
// archives everything.
func TestS3ServerDownDuringUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, o := s3Server(t)
	o.RetryFor = time.Second
	for _, step := range []string{"written", "mid-upload", "uploaded"} {
		t.Run(step, func(t *testing.T) {
			killed := false
			kill := func() {
				if !killed {
					killed = true
					srv.Kill()
				}
			}
			hook := func(at string) {
				if at == step {
					kill()
				}
			}
			node := map[string]int{"written": 1, "mid-upload": 2, "uploaded": 3}[step]
			no := *o
			if step == "mid-upload" {
				// The server dies when half of the first archive's bytes
				// have gone out.
				no.Transport = killingTransport{kill: kill}
			}
			s, _, clock := openTest(t, &Options{S3: &no, Node: node, ColdAfter: time.Hour, hook: hook})
			clock.Set(testBase.Add(5 * 24 * time.Hour))
			fillDays(t, s, 3, 40)
			before := snapshotQueries(t, s)
			err := s.Compact(ctx)
			require.Error(t, err)
			require.Contains(t, err.Error(), "s3://"+o.Bucket+"/acts/node-")
			require.True(t, killed)
			st, err := s.Stats(ctx)
			require.NoError(t, err)
			require.Zero(t, st.Archives, "no window left pebble")
			require.Equal(t, before, snapshotQueries(t, s), "queries unchanged")

			srv.Restart(t)
			if step == "uploaded" {
				require.Len(t, s3Objects(t, srv, o, node), 2, "the owner and an orphan")
			} else {
				require.Len(t, s3Objects(t, srv, o, node), 1, "the owner only")
			}
			require.NoError(t, s.Compact(ctx))
			st, err = s.Stats(ctx)
			require.NoError(t, err)
			require.Equal(t, 3, st.Archives)
			require.Equal(t, storeObjects(s), s3Objects(t, srv, o, node), "exactly the store's archives")
			require.Equal(t, before, snapshotQueries(t, s))
			require.NoError(t, s.Verify(ctx))
		})
	}
}

// killingTransport calls kill once half the body of an archive's PUT has
// been read.
type killingTransport struct{ kill func() }

func (k killingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, ".arc") && req.Body != nil && req.ContentLength > 2 {
		req.Body = &killingBody{ReadCloser: req.Body, left: req.ContentLength / 2, kill: k.kill}
	}
	return http.DefaultTransport.RoundTrip(req)
}

type killingBody struct {
	io.ReadCloser
	left int64
	kill func()
}

func (b *killingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.kill()
	} else if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// TestS3ServerDownDuringReads: with the server gone, an archived query fails
// within its deadline naming the object while hot data answers; a query
// waiting out a restart succeeds.
func TestS3ServerDownDuringReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, o := s3Server(t)
	s, _, _ := archivedStore(t, Options{S3: o}, 3, 40)
	hot := mustAppend(t, s, act("t9", "u1", testBase.Add(5*24*time.Hour-time.Minute)))
	want := snapshotQueries(t, s)
	s.cache.RemoveIf(func(cacheKey) bool { return true })

	srv.Kill()
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := s.Query().Users("u2").All(qctx)
	cancel()
	require.Error(t, err)
	require.Contains(t, err.Error(), "s3://"+o.Bucket+"/acts/node-0/")
	page, err := s.Query().Types("t9").Since(testBase.Add(4 * 24 * time.Hour)).All(ctx)
	require.NoError(t, err, "hot data answers")
	require.Len(t, page.Activities, 1)
	require.Equal(t, hot[0], page.Activities[0].ID)

	// A query that starts while the server is down and has time to wait
	// gets its answer once the server is back.
	done := make(chan error, 1)
	go func() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, err := s.Query().Users("u3").All(qctx)
		done <- err
	}()
	srv.Restart(t)
	require.NoError(t, <-done)
	require.Equal(t, want, snapshotQueries(t, s))
}

// TestS3ObjectCorruptOrMissing changes and deletes archive objects behind
// the store's back: Verify names them, and queries over those windows fail
// naming them while the others answer.
func TestS3ObjectCorruptOrMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, o := sharedS3(t)
	s, _, _ := archivedStore(t, Options{S3: o}, 3, 40)
	require.NoError(t, s.Verify(ctx))
	c := srv.Client(t)
	s.mu.RLock()
	day0, day2 := s.archives[testBase.UnixNano()/s.width], s.archives[testBase.Add(48*time.Hour).UnixNano()/s.width]
	s.mu.RUnlock()
	key0, key2 := "acts/node-0/"+day0.name, "acts/node-0/"+day2.name

	// Flip a byte in the middle of day 0's newest block: same size, bad CRC.
	obj, err := c.GetObject(ctx, o.Bucket, key0, minio.GetObjectOptions{})
	require.NoError(t, err)
	b, err := io.ReadAll(obj)
	require.NoError(t, err)
	obj.Close()
	ft, err := arcfmt.ReadFooter(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	b[ft.Blocks[0].Off+int64(ft.Blocks[0].CLen)/2] ^= 0x40
	_, err = c.PutObject(ctx, o.Bucket, key0, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
	require.NoError(t, err)
	require.NoError(t, c.RemoveObject(ctx, o.Bucket, key2, minio.RemoveObjectOptions{}))

	err = s.Verify(ctx)
	var ve *VerifyError
	require.ErrorAs(t, err, &ve)
	require.ErrorIs(t, err, ErrCorrupt)
	text := strings.Join(ve.Problems, "\n")
	require.Contains(t, text, "s3://"+o.Bucket+"/"+key0)
	require.Contains(t, text, "archive s3://"+o.Bucket+"/"+key2+": file is missing")

	s.cache.RemoveIf(func(cacheKey) bool { return true })
	day := func(d int) *Query {
		return s.Query().Since(testBase.Add(time.Duration(d) * 24 * time.Hour)).Until(testBase.Add(time.Duration(d+1) * 24 * time.Hour))
	}
	_, err = day(0).All(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), key0)
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = day(2).Limit(100).All(qctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), key2)
	page, err := day(1).Limit(100).All(ctx)
	require.NoError(t, err)
	require.Len(t, page.Activities, 40)
}

// TestS3DiskCache: what a reader fetched stays in its disk cache, bounded by
// bytes, and answers with the server gone; a damaged cache file is a miss.
func TestS3DiskCache(t *testing.T) {
	t.Parallel()
	srv, o := s3Server(t)
	s, _, _ := archivedStore(t, Options{S3: o}, 3, 40)
	want := snapshotQueries(t, s)

	ro := *o
	ro.CacheDir = t.TempDir()
	ro.CacheBytes = 1 << 20
	rd, err := OpenReader(&Options{S3: &ro, PollEvery: -1})
	require.NoError(t, err)
	defer rd.Close()
	require.Equal(t, want, snapshotQueries(t, rd))
	files, err := os.ReadDir(ro.CacheDir)
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var total int64
	for _, f := range files {
		info, err := f.Info()
		require.NoError(t, err)
		total += info.Size()
	}
	require.LessOrEqual(t, total, ro.CacheBytes)

	// Damage one cache file: it is read again from the bucket.
	p := filepath.Join(ro.CacheDir, files[0].Name())
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[0] ^= 0xff
	require.NoError(t, os.WriteFile(p, b, 0o644))
	rd.cache.RemoveIf(func(cacheKey) bool { return true })
	require.Equal(t, want, snapshotQueries(t, rd))

	// With the server gone, the disk cache answers alone.
	srv.Kill()
	rd.cache.RemoveIf(func(cacheKey) bool { return true })
	require.Equal(t, want, snapshotQueries(t, rd))
}

// TestS3LocationIsKept: a store whose archives are in a bucket refuses to
// open without it, or with another node number, and one with archives in a
// folder refuses a bucket.
func TestS3LocationIsKept(t *testing.T) {
	t.Parallel()
	_, o := sharedS3(t)
	s, dir, _ := archivedStore(t, Options{S3: o, Node: 4}, 2, 10)
	require.NoError(t, s.Close())
	_, err := Open(dir, &Options{Node: 4})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorContains(t, err, "s3://"+o.Bucket+"/acts/node-4/")
	_, err = Open(dir, &Options{S3: o, Node: 5})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorContains(t, err, "node number 4, not 5")
	s, err = Open(dir, &Options{S3: o, Node: 4})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Without a bucket too, a store that has assigned IDs keeps its number.
	fresh := t.TempDir()
	s, err = Open(fresh, &Options{Node: 2})
	require.NoError(t, err)
	mustAppend(t, s, act("t", "u", testBase))
	require.NoError(t, s.Close())
	_, err = Open(fresh, &Options{Node: 5})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorContains(t, err, "node number 2, not 5")
	s, err = Open(t.TempDir(), &Options{Node: 5}) // no ID yet: any number
	require.NoError(t, err)
	require.NoError(t, s.Close())

	local, ldir, _ := archivedStore(t, Options{Node: 6}, 2, 10)
	require.NoError(t, local.Close())
	_, err = Open(ldir, &Options{S3: o, Node: 6})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorContains(t, err, "a folder")
}

// TestS3OpenRemovesLeftovers: what a crash during a compaction leaves (a
// staging file, an uploaded object no record points to) is removed by the
// next Open; other nodes' objects, other prefixes and other files in the
// node's folder are not touched.
func TestS3OpenRemovesLeftovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, o := sharedS3(t)
	s, dir, clock := archivedStore(t, Options{S3: o, Node: 3}, 2, 10)
	keep := storeObjects(s)
	require.NoError(t, s.Close())

	c := srv.Client(t)
	put := func(key string) {
		_, err := c.PutObject(ctx, o.Bucket, key, strings.NewReader("x"), 1, minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	orphan := archiveName(testBase.UnixNano()/int64(24*time.Hour), 999999)
	put("acts/node-3/" + orphan)  // uploaded, never recorded
	put("acts/node-3/notes.txt")  // not an archive name
	put("acts/node-4/" + orphan)  // another node's
	put("other/node-3/" + orphan) // another prefix
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "upload"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "upload", orphan+".upload"), []byte("x"), 0o644))

	s, err := Open(dir, &Options{S3: o, Node: 3, Now: clock.Now})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, sortedCopy(append(keep, "notes.txt")), s3Objects(t, srv, o, 3))
	require.Equal(t, []string{orphan}, s3Objects(t, srv, o, 4))
	_, err = c.StatObject(ctx, o.Bucket, "other/node-3/"+orphan, minio.StatObjectOptions{})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "upload"))
	require.ErrorIs(t, err, os.ErrNotExist)
	err = s.Verify(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "notes.txt is not an archive of this store")
}

// sortedCopy returns xs sorted, leaving xs as it is.
func sortedCopy(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}
