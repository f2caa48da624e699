package activitystore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/minio/minio-go/v7"

	"github.com/activitystore/activitystore/internal/lru"
)

// A reader (OpenReader) is a Store without a hot tier: one read-only node
// store per node folder of the bucket, each holding that node's archives,
// and queries merged across them newest first. IDs of different nodes
// never collide (see ID), so merging by ID is exact.
type reader struct {
	client *minio.Client
	o      S3Options
	cache  *diskCache // S3Options.CacheDir's, for all nodes; nil without

	mu    sync.RWMutex
	nodes map[int]*Store // guarded by mu; a node store is never removed
	bad   map[string]error

	refreshMu sync.Mutex // one Refresh at a time
}

// OpenReader opens a read-only store over the archives of every node in
// the bucket of opts.S3 (the folders node-<n> under its prefix), for query
// nodes that share the bucket with the writing stores. It keeps no local
// state: it lists the bucket, reads each archive's footer, and from then on
// reads indexes and blocks on demand through the cache (Options.CacheBytes,
// and S3.CacheDir if set).
//
// Every query, count, timeline and Iter answers over all nodes' archives,
// merged newest first, and Get finds an ID on its node. Activities still in
// a writer's pebble (not yet compacted) are not seen. Appends, Tail,
// Compact, DropBefore and Backup return ErrReadOnly.
//
// New archives, archives replaced by a compaction with late arrivals, and
// archives removed by retention are picked up by Refresh, which runs every
// Options.PollEvery (default 30 s; each run lists every node's folder once)
// and may be called directly. Open reads the footer of each new archive.
func OpenReader(opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.S3 == nil {
		return nil, fmt.Errorf("%w: OpenReader needs S3", ErrInvalidOptions)
	}
	c, err := newS3Client(*o.S3)
	if err != nil {
		return nil, err
	}
	s := &Store{opts: o, readOnly: true, stop: make(chan struct{}), rd: &reader{client: c, o: *o.S3, nodes: map[int]*Store{}, bad: map[string]error{}}}
	if o.S3.CacheDir != "" {
		if s.rd.cache, err = openDiskCache(o.S3.CacheDir, o.S3.CacheBytes); err != nil {
			return nil, err
		}
	}
	s.cache = lru.New[cacheKey, any](o.CacheBytes)
	s.records = newRecordCache(o.RecordCacheBytes)
	s.stopCtx, s.stopFn = context.WithCancel(context.Background())
	if err := s.Refresh(context.Background()); err != nil {
		return nil, err
	}
	if o.PollEvery > 0 {
		s.bg.Add(1)
		go s.every(o.PollEvery, "refresh", s.Refresh)
	}
	return s, nil
}

// Refresh brings a store opened with OpenReader up to date with the bucket:
// new nodes and archives are added, replaced and removed archives are
// dropped. On a store opened with Open it does nothing.
func (s *Store) Refresh(ctx context.Context) error {
	if s.rd == nil {
		return nil
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.refresh(ctx)
}

// refresh is Refresh; the caller has entered s.
func (s *Store) refresh(ctx context.Context) error {
	r := s.rd
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	nodes, err := r.listNodes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := s.refreshNode(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listNodes returns the node numbers with a folder under the prefix.
func (r *reader) listNodes(ctx context.Context) ([]int, error) {
	base := r.o.Prefix
	if base != "" {
		base += "/"
	}
	t := &s3Tier{c: r.client, bucket: r.o.Bucket, prefix: base, retryFor: r.o.RetryFor}
	var nodes []int
	err := t.retry(ctx, func(ctx context.Context) error {
		nodes = nodes[:0]
		for o := range r.client.ListObjectsIter(ctx, r.o.Bucket, minio.ListObjectsOptions{Prefix: base}) {
			if o.Err != nil {
				return o.Err
			}
			name := strings.TrimSuffix(strings.TrimPrefix(o.Key, base), "/")
			if num, ok := strings.CutPrefix(name, "node-"); ok {
				if n, err := strconv.Atoi(num); err == nil && n >= 0 && n <= MaxNode && strconv.Itoa(n) == num {
					nodes = append(nodes, n)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("activitystore: cannot list s3://%s/%s: %w", r.o.Bucket, base, err)
	}
	slices.Sort(nodes)
	return nodes, nil
}

// refreshNode lists node n's folder and updates its node store.
func (s *Store) refreshNode(ctx context.Context, n int) error {
	r := s.rd
	r.mu.RLock()
	ns := r.nodes[n]
	r.mu.RUnlock()
	t := &s3Tier{c: r.client, bucket: r.o.Bucket, prefix: nodePrefix(r.o.Prefix, n), retryFor: r.o.RetryFor, endpoint: r.o.Endpoint, cache: r.cache, gets: new(atomic.Int64)}
	if ns != nil {
		t = ns.tier.(*s3Tier)
	}
	names, err := t.list(ctx)
	if err != nil {
		return err
	}
	// The newest generation of each window is its archive.
	latest := map[int64]string{}
	gens := map[int64]uint64{}
	for _, name := range names {
		m := archiveNameRE.FindStringSubmatch(name)
		if m == nil || m[3] != "" {
			continue
		}
		w, _ := strconv.ParseUint(m[1], 16, 64)
		gen, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			continue
		}
		if g, ok := gens[int64(w)]; !ok || gen > g {
			gens[int64(w)], latest[int64(w)] = gen, name
		}
	}
	if ns == nil {
		if len(latest) == 0 {
			return nil
		}
		db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}, MemTableSize: 1 << 20})
		if err != nil {
			return err
		}
		o := s.opts
		o.Node = n
		ns = &Store{opts: o, db: db, tier: t, cache: s.cache, records: s.records, stop: make(chan struct{}),
			segs: map[int64]*segment{}, sealed: map[int64]*sealedSeg{}, archives: map[int64]*archive{}}
		ns.stopCtx, ns.stopFn = context.WithCancel(context.Background())
		ns.readOnly = true
	}
	// Probe the new archives outside the locks.
	add := map[int64]*archive{}
	var errs []error
	for w, name := range latest {
		ns.mu.RLock()
		cur := ns.archives[w]
		ns.mu.RUnlock()
		if cur != nil && cur.name == name {
			continue
		}
		a, err := probeArchive(ctx, t, name, w, gens[w])
		r.mu.Lock()
		if err != nil {
			r.bad[t.where(name)] = err
			errs = append(errs, err)
		} else {
			delete(r.bad, t.where(name))
		}
		r.mu.Unlock()
		if err != nil {
			continue
		}
		if ns.width == 0 {
			ns.width = a.width
		}
		if a.width != ns.width {
			a.release()
			errs = append(errs, archiveCorrupt(a.where(), "has windows of %s, the node's others %s", time.Duration(a.width), time.Duration(ns.width)))
			continue
		}
		a.release()
		add[w] = a
	}
	var gone []*archive
	ns.swapMu.Lock()
	ns.mu.Lock()
	for w, a := range ns.archives {
		if name, ok := latest[w]; !ok || name != a.name && add[w] != nil {
			gone = append(gone, a)
			delete(ns.archives, w)
		}
	}
	for w, a := range add {
		ns.archives[w] = a
	}
	ns.reorder()
	ns.mu.Unlock()
	ns.swapMu.Unlock()
	for _, a := range gone {
		a.drop()
		s.cache.RemoveIf(func(k cacheKey) bool { return k.a == a })
	}
	r.mu.Lock()
	if r.nodes[n] == nil {
		if ns.width != 0 {
			r.nodes[n] = ns
		} else {
			ns.db.Close() // no archive of the node could be read yet
		}
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}

// probeArchive opens archive name of window w in t and reads its footer.
// The caller releases it.
func probeArchive(ctx context.Context, t tier, name string, w int64, gen uint64) (*archive, error) {
	o, ft, err := openArchive(ctx, t, name)
	if err != nil {
		return nil, err
	}
	if ft.Window != w || ft.Width <= 0 {
		o.close()
		return nil, archiveCorrupt(t.where(name), "holds window %d, its name says %d", ft.Window, w)
	}
	return &archive{window: w, width: ft.Width, gen: gen, n: ft.N, size: o.size(), name: name, t: t, f: o, ft: ft, refs: 1}, nil
}

// onReader runs fn, a read on the reader s, as a call of s; if it met an
// archive that is gone (a writer replaced or dropped it since the last
// refresh), it refreshes and runs fn once more.
func onReader[T any](ctx context.Context, s *Store, fn func() (T, error)) (T, error) {
	var zero T
	if err := s.enter(); err != nil {
		return zero, err
	}
	defer s.leave()
	v, err := fn()
	if errors.Is(err, os.ErrNotExist) {
		if rerr := s.refresh(ctx); rerr != nil {
			return zero, errors.Join(err, rerr)
		}
		v, err = fn()
	}
	return v, err
}

// nodeList returns the node stores, in node order.
func (r *reader) nodeList() []*Store {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Store, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Store) int { return cmp.Compare(a.opts.Node, b.opts.Node) })
	return out
}

// readingAll runs fn while no node's archives change.
func readingAll(nodes []*Store, fn func() error) error {
	for _, n := range nodes {
		n.swapMu.RLock()
	}
	defer func() {
		for _, n := range nodes {
			n.swapMu.RUnlock()
		}
	}()
	return fn()
}

// on returns q for node store n.
func (q *Query) on(n *Store) *Query {
	c := *q
	c.s = n
	return &c
}

// nodeHits streams the matches of one node store in chunks.
type nodeHits struct {
	s     *Store
	p     plan
	buf   []hit
	i     int
	done  bool
	chunk int // matches read at the next refill
}

func (h *nodeHits) peek(ctx context.Context) (*hit, error) {
	if h.i < len(h.buf) {
		return &h.buf[h.i], nil
	}
	if h.done {
		return nil, nil
	}
	hs, err := h.s.hits(ctx, &h.p, h.chunk)
	if err != nil {
		return nil, err
	}
	h.buf, h.i = hs, 0
	if len(hs) < h.chunk {
		h.done = true
	}
	h.chunk = min(2*h.chunk, 4096)
	if len(hs) == 0 {
		return nil, nil
	}
	h.p.hi = hs[len(hs)-1].id
	return &h.buf[0], nil
}

// mergedHits returns the matches of q across the nodes, newest first: want
// of them after skipping skip, each with the index of its node.
func (q *Query) mergedHits(ctx context.Context, nodes []*Store, skip uint64, want int, forAll bool) ([]hit, []int, error) {
	streams := make([]*nodeHits, 0, len(nodes))
	for _, n := range nodes {
		p, err := q.on(n).plan(forAll)
		if err != nil {
			return nil, nil, err
		}
		p.skip = 0
		// A page of want after skip takes at most skip+want of each node;
		// the first read asks for that much, up to a bound.
		streams = append(streams, &nodeHits{s: n, p: p, chunk: int(min(skip+uint64(want), 1024))})
	}
	skip, err := skipWindows(ctx, streams, skip)
	if err != nil {
		return nil, nil, err
	}
	var out []hit
	var from []int
	for len(out) < want {
		if skip%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
		}
		best := -1
		var bh *hit
		for i, st := range streams {
			h, err := st.peek(ctx)
			if err != nil {
				return nil, nil, err
			}
			if h != nil && (bh == nil || h.id.Compare(bh.id) > 0) {
				best, bh = i, h
			}
		}
		if best < 0 {
			break
		}
		if skip > 0 {
			skip--
		} else {
			out = append(out, *bh)
			from = append(from, best)
		}
		streams[best].i++
	}
	return out, from, nil
}

// skipWindows passes over whole windows of matches, newest first, while
// skip covers them, counting from indexes only, and returns what is left
// to skip one match at a time. It needs the nodes' windows to line up (one
// width); otherwise it leaves skip whole.
func skipWindows(ctx context.Context, streams []*nodeHits, skip uint64) (uint64, error) {
	if skip == 0 || len(streams) == 0 {
		return skip, nil
	}
	width := streams[0].s.width
	for _, st := range streams {
		if st.s.width != width {
			return skip, nil
		}
	}
	lo, hi := streams[0].p.lo, streams[0].p.hi
	for skip > 0 && lo.Compare(hi) < 0 {
		// The newest window below hi with an archive in any node.
		w, found := int64(0), false
		for _, st := range streams {
			if sps := st.s.spansIn(lo, hi); len(sps) > 0 && (!found || sps[0].window > w) {
				w, found = sps[0].window, true
			}
		}
		if !found {
			break
		}
		wlo := idFloor(w * width)
		if wlo.Compare(lo) < 0 {
			wlo = lo
		}
		var total uint64
		for _, st := range streams {
			p := st.p
			p.lo, p.hi = wlo, hi
			n, err := st.s.countIn(ctx, &p)
			if err != nil {
				return 0, err
			}
			total += n
		}
		if total > skip {
			break
		}
		skip -= total
		hi = wlo
		for _, st := range streams {
			st.p.hi = hi
		}
	}
	return skip, nil
}

// fetchMerged reads the activities of hits hs, from nodes[from[i]].
func fetchMerged(ctx context.Context, nodes []*Store, hs []hit, from []int) ([]Activity, error) {
	out := make([]Activity, len(hs))
	for k, n := range nodes {
		var mine []hit
		var at []int
		for i := range hs {
			if from[i] == k {
				mine = append(mine, hs[i])
				at = append(at, i)
			}
		}
		if len(mine) == 0 {
			continue
		}
		acts, err := n.fetch(ctx, mine, true)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = acts[j]
		}
	}
	return out, nil
}

// allReader is All on a reader.
func (q *Query) allReader(ctx context.Context) (Page, error) {
	p, err := q.plan(true)
	if err != nil {
		return Page{}, err
	}
	nodes := q.s.rd.nodeList()
	if len(nodes) == 1 {
		return q.on(nodes[0]).All(ctx)
	}
	var page Page
	err = readingAll(nodes, func() error {
		hs, from, err := q.mergedHits(ctx, nodes, p.skip, p.limit+1, true)
		if err != nil {
			return err
		}
		if len(hs) > p.limit {
			hs, from = hs[:p.limit], from[:p.limit]
			page.Next = encodeCursor(hs[len(hs)-1].id)
		}
		page.Activities, err = fetchMerged(ctx, nodes, hs, from)
		return err
	})
	return page, err
}

// iterReader is Iter on a reader: the nodes' Iters merged by ID.
func (q *Query) iterReader(ctx context.Context) iter.Seq2[Activity, error] {
	return func(yield func(Activity, error) bool) {
		if _, err := q.plan(false); err != nil {
			yield(Activity{}, err)
			return
		}
		// Each node streams all its matches from the cursor on; Skip and
		// Limit apply to the merge.
		type stream struct {
			n       *Store
			next    func() (Activity, error, bool)
			stop    func()
			cur     Activity
			ok      bool
			last    ID // the last activity taken from this node
			took    bool
			retries int
		}
		start := func(st *stream) {
			nq := q.on(st.n)
			nq.skip, nq.limit = 0, 0
			if st.took {
				nq.after = encodeCursor(st.last)
			}
			st.next, st.stop = iter.Pull2(nq.Iter(ctx))
		}
		var ss []*stream
		defer func() {
			for _, st := range ss {
				st.stop()
			}
		}()
		for _, n := range q.s.rd.nodeList() {
			st := &stream{n: n}
			start(st)
			ss = append(ss, st)
		}
		// advance reads a stream's next activity. An archive that a writer
		// replaced or dropped since the last refresh makes the node's
		// stream fail: refresh and go on after the last activity taken.
		advance := func(st *stream) error {
			for {
				a, err, ok := st.next()
				if err == nil {
					st.cur, st.ok = a, ok
					return nil
				}
				if !errors.Is(err, os.ErrNotExist) || st.retries == 3 {
					return err
				}
				st.retries++
				if rerr := q.s.Refresh(ctx); rerr != nil {
					return errors.Join(err, rerr)
				}
				st.stop()
				start(st)
			}
		}
		for _, st := range ss {
			if err := advance(st); err != nil {
				yield(Activity{}, err)
				return
			}
		}
		skip, left := q.skip, q.limit
		for left > 0 || q.limit == 0 {
			var best *stream
			for _, st := range ss {
				if st.ok && (best == nil || st.cur.ID.Compare(best.cur.ID) > 0) {
					best = st
				}
			}
			if best == nil {
				return
			}
			best.last, best.took = best.cur.ID, true
			if skip > 0 {
				skip--
			} else {
				if !yield(best.cur, nil) {
					return
				}
				left--
			}
			if err := advance(best); err != nil {
				yield(Activity{}, err)
				return
			}
		}
	}
}

// countReader is Count on a reader.
func (q *Query) countReader(ctx context.Context) (int, error) {
	if _, err := q.plan(false); err != nil {
		return 0, err
	}
	total := 0
	for _, n := range q.s.rd.nodeList() {
		k, err := q.on(n).Count(ctx)
		if err != nil {
			return 0, err
		}
		total += k
	}
	return total, nil
}

// countByReader is CountBy on a reader.
func (q *Query) countByReader(ctx context.Context, fieldName string) ([]ValueCount, error) {
	if _, err := q.plan(false); err != nil {
		return nil, err
	}
	sum := map[string]int{}
	for _, n := range q.s.rd.nodeList() {
		vcs, err := q.on(n).CountBy(ctx, fieldName)
		if err != nil {
			return nil, err
		}
		for _, vc := range vcs {
			sum[vc.Value] += vc.Count
		}
	}
	out := make([]ValueCount, 0, len(sum))
	for v, c := range sum {
		out = append(out, ValueCount{Value: v, Count: c})
	}
	sortValueCounts(out)
	return out, nil
}

// sortValueCounts orders vcs most frequent first, ties by value.
func sortValueCounts(vcs []ValueCount) {
	sort.Slice(vcs, func(i, j int) bool {
		if vcs[i].Count != vcs[j].Count {
			return vcs[i].Count > vcs[j].Count
		}
		return vcs[i].Value < vcs[j].Value
	})
}

// timelineReader is Timeline on a reader: the nodes' buckets summed, the
// gaps between their ranges filled with zeros.
func (q *Query) timelineReader(ctx context.Context, bucket time.Duration) ([]Bucket, error) {
	sum := map[int64]int{}
	var lo, hi int64
	found := false
	for _, n := range q.s.rd.nodeList() {
		bs, err := q.on(n).Timeline(ctx, bucket)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			t := b.Start.UnixNano()
			sum[t] += b.Count
			if !found || t < lo {
				lo = t
			}
			if !found || t > hi {
				hi = t
			}
			found = true
		}
	}
	if !found {
		// No node, or none with buckets: the store's own answer for an
		// empty store (the range checks included).
		empty := &Store{opts: q.s.opts, width: int64(defaultSegmentWidth), segs: map[int64]*segment{}, sealed: map[int64]*sealedSeg{}, archives: map[int64]*archive{}}
		return q.on(empty).Timeline(ctx, bucket)
	}
	nb := (hi-lo)/int64(bucket) + 1
	if nb > MaxBuckets {
		return nil, &QueryError{Field: "bucket", Reason: fmt.Sprintf("%s makes %d buckets between %s and %s, over the limit of %d", bucket, nb, time.Unix(0, lo).UTC().Format(time.RFC3339), time.Unix(0, hi).UTC().Format(time.RFC3339), MaxBuckets)}
	}
	out := make([]Bucket, 0, nb)
	for t := lo; t <= hi; t += int64(bucket) {
		out = append(out, Bucket{Start: time.Unix(0, t).UTC(), Count: sum[t]})
		if t > hi-int64(bucket) {
			break
		}
	}
	return out, nil
}

// getReader is Get on a reader: the ID names its node.
func (s *Store) getReader(ctx context.Context, id ID) (Activity, error) {
	s.rd.mu.RLock()
	n := s.rd.nodes[id.Node()]
	s.rd.mu.RUnlock()
	if n == nil {
		return Activity{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return n.Get(ctx, id)
}

// countsReader is Counts on a reader.
func (s *Store) countsReader(ctx context.Context) (Counts, error) {
	var c Counts
	for _, n := range s.rd.nodeList() {
		nc, err := n.Counts(ctx)
		if err != nil {
			return Counts{}, err
		}
		c.Activities += nc.Activities
		c.ArchivedActivities += nc.ArchivedActivities
		c.Archives += nc.Archives
		c.ArchiveBytes += nc.ArchiveBytes
	}
	c.CacheBytes, _ = s.cache.Size()
	return c, nil
}

// statsReader is Stats on a reader: the nodes' archives.
func (s *Store) statsReader(ctx context.Context) (Stats, error) {
	st := Stats{IndexBytesByField: map[string]int64{}, Values: map[string]int{}}
	for _, n := range s.rd.nodeList() {
		ns, err := n.Stats(ctx)
		if err != nil {
			return Stats{}, err
		}
		st.Activities += ns.Activities
		st.Archives += ns.Archives
		st.ArchivedActivities += ns.ArchivedActivities
		st.ArchiveBytes += ns.ArchiveBytes
		st.RecordReads += ns.RecordReads
		for k, v := range ns.Values {
			st.Values[k] = max(st.Values[k], v)
		}
	}
	st.CacheBytes, _ = s.cache.Size()
	st.CacheLimit = s.opts.CacheBytes
	st.RecordCacheHits, st.RecordCacheBytes = s.records.stats()
	return st, nil
}

// verifyReader is Verify on a reader: every node's archives, and the
// objects that could not be read when last listed.
func (s *Store) verifyReader(ctx context.Context) error {
	var problems []string
	s.rd.mu.RLock()
	for where, err := range s.rd.bad {
		problems = append(problems, fmt.Sprintf("%s: %v", where, err))
	}
	s.rd.mu.RUnlock()
	for _, n := range s.rd.nodeList() {
		// Read the objects outside the node's locks, so that queries and
		// refreshes go on; a problem of an archive that a refresh dropped
		// meanwhile (a writer replaced or deleted it) does not count.
		for _, sp := range n.allSpans() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var found []string
			n.verifyArchive(ctx, sp.arc, func(format string, args ...any) {
				found = append(found, fmt.Sprintf(format, args...))
			})
			n.mu.RLock()
			current := n.archives[sp.window] == sp.arc
			n.mu.RUnlock()
			if current {
				problems = append(problems, found...)
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return &VerifyError{Problems: problems}
	}
	return nil
}

// closeReader closes the node stores.
func (s *Store) closeReader() error {
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	var errs []error
	for _, n := range s.rd.nodes {
		n.closed.Store(true)
		n.closeMu.Lock()
		n.mu.Lock()
		for _, a := range n.archives {
			a.drop()
		}
		n.mu.Unlock()
		errs = append(errs, n.db.Close())
		n.closeMu.Unlock()
	}
	return errors.Join(errs...)
}
