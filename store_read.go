package activitystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// The read path. Every read (Get, All, Iter, Count, CountBy, Timeline,
// Tail's catch-up) walks windows through spansIn, opens each window's
// segments as parts, whatever their tier, and asks the parts for
// candidates, counts and IDs. Results are hits: an ID and where its
// record is.

// part is one segment of a window opened for reading: an in-memory index
// (an open segment, or an archive's index) or a sealed segment read piece by
// piece. arc is the archive that holds its records; nil means pebble.
type part struct {
	mem *segment
	sl  *sealedSeg
	arc *archive
}

// hit is one matching activity: its ID and where its record is: the
// archive holding it, or pebble when arc is nil; rec is the copy a sealed
// segment keeps, when it has one (shared: never change it).
type hit struct {
	id  ID
	arc *archive
	rec []byte
}

func (pt part) window() int64 {
	if pt.sl != nil {
		return pt.sl.window
	}
	return pt.mem.window
}

// spansIn returns the windows that may hold IDs in [lo, hi), newest first.
func (s *Store) spansIn(lo, hi ID) []span {
	all := s.allSpans()
	wHi := int64(math.MaxInt64)
	if hi != maxID {
		// The newest ID that can match is just below hi: when hi is a time
		// floor (no activity has it), that is in the window of the
		// nanosecond before.
		ns := hi.UnixNano()
		if hi.seq() == 0 && ns > 0 {
			ns--
		}
		wHi = ns / s.width
	}
	wLo := lo.UnixNano() / s.width
	i := 0
	for i < len(all) && all[i].window > wHi {
		i++
	}
	j := i
	for j < len(all) && all[j].window >= wLo {
		j++
	}
	return all[i:j]
}

// parts opens the segments of span sp: one, or two for an archived window
// with late arrivals in pebble. In-memory segments number label values
// store-wide, and a segment opened or loaded since p was planned may bring
// values p's filters lacked a number for: p is resolved again then.
func (s *Store) parts(ctx context.Context, p *plan, sp span, dst []part) ([]part, error) {
	dst = dst[:0]
	if sp.arc != nil {
		sl, err := s.arcView(ctx, sp.arc)
		if err != nil {
			return nil, err
		}
		if sl != nil {
			dst = append(dst, part{sl: sl, arc: sp.arc})
		} else {
			ix, err := s.archiveIndex(ctx, sp.arc)
			if err != nil {
				return nil, err
			}
			dst = append(dst, part{mem: ix.seg, arc: sp.arc})
		}
	}
	if p != nil && p.fs.missing && (sp.arc != nil || sp.hot != nil) {
		p.fs.resolve(&s.dicts)
	}
	switch {
	case sp.hot != nil:
		dst = append(dst, part{mem: sp.hot})
	case sp.sl != nil:
		dst = append(dst, part{sl: sp.sl})
	}
	return dst, nil
}

// candidates returns the ordinals of pt that pass the filters, and false
// when none can. The result may be a bitmap of pt itself: never change it.
func (s *Store) candidates(fs *filterSet, pt part) (ordSet, bool, error) {
	if pt.sl == nil {
		pt.mem.mu.RLock()
		defer pt.mem.mu.RUnlock()
		c, ok := fs.candidates(pt.mem)
		return c, ok, nil
	}
	return fs.sealedCandidates(s, pt.sl)
}

// count returns how many members of c have IDs in [lo, hi).
func (s *Store) count(pt part, c ordSet, lo, hi ID) (uint64, error) {
	if pt.sl == nil {
		pt.mem.mu.RLock()
		defer pt.mem.mu.RUnlock()
		return pt.mem.count(c, lo, hi), nil
	}
	oLo, err := s.sealedBound(pt.sl, lo)
	if err != nil {
		return 0, err
	}
	oHi, err := s.sealedBound(pt.sl, hi)
	if err != nil {
		return 0, err
	}
	return c.countRange(oLo, oHi), nil
}

// collect walks the members of c with IDs in [lo, hi) newest first: it
// passes over the first *skip of them (decrementing *skip) and appends up to
// want more to dst.
func (s *Store) collect(pt part, c ordSet, lo, hi ID, skip *uint64, want int, dst []hit) ([]hit, error) {
	if pt.sl == nil {
		pt.mem.mu.RLock()
		defer pt.mem.mu.RUnlock()
		var buf [64]ID
		ids := pt.mem.collect(c, lo, hi, skip, want, buf[:0])
		for _, id := range ids {
			dst = append(dst, hit{id: id, arc: pt.arc})
		}
		return dst, nil
	}
	sl := pt.sl
	oLo, err := s.sealedBound(sl, lo)
	if err != nil {
		return nil, err
	}
	oHi, err := s.sealedBound(sl, hi)
	if err != nil {
		return nil, err
	}
	total := c.countRange(oLo, oHi)
	if *skip >= total {
		*skip -= total
		return dst, nil
	}
	top := int64(oHi) - 1
	if k := *skip; k > 0 {
		*skip = 0
		// Sealed ordinals are in ID order: the k-th member below oHi,
		// newest first, is found by rank.
		if c.bm == nil {
			top -= int64(k)
		} else {
			r := c.bm.Rank(oHi-1) - k // rank of the member to start from
			o, err := c.bm.Select(uint32(r - 1))
			if err != nil {
				return dst, nil
			}
			top = int64(o)
		}
	}
	var chunk []ID // the ID chunk of the last match; matches are often in the same
	ci := -1
	for ; want > 0 && top >= int64(oLo); want-- {
		o := c.prev(uint32(top))
		if o < int64(oLo) {
			break
		}
		top = o - 1
		if id, rec, ok := c.inlineID(uint32(o)); ok {
			dst = append(dst, hit{id: id, rec: rec, arc: pt.arc})
			continue
		}
		if k := int(o) / sl.chunk; k != ci {
			if chunk, err = s.idChunk(sl, k); err != nil {
				return nil, err
			}
			ci = k
		}
		dst = append(dst, hit{id: chunk[int(o)%sl.chunk], arc: pt.arc})
	}
	return dst, nil
}

// find reports whether pt holds id.
func (s *Store) find(pt part, id ID) (bool, error) {
	if pt.sl == nil {
		pt.mem.mu.RLock()
		defer pt.mem.mu.RUnlock()
		return pt.mem.find(id) >= 0, nil
	}
	o, err := s.sealedBound(pt.sl, id)
	if err != nil || int(o) >= pt.sl.n {
		return false, err
	}
	got, err := s.idAt(pt.sl, int(o))
	return got == id, err
}

// hits runs p and returns up to want matches, newest first, after p.skip.
// The caller holds s.swapMu for reading.
func (s *Store) hits(ctx context.Context, p *plan, want int) ([]hit, error) {
	if want <= 0 || p.lo.Compare(p.hi) >= 0 || (p.fs.none && !p.fs.missing) {
		return nil, nil
	}
	out := make([]hit, 0, min(want, 1024))
	skip := p.skip
	var pts []part
	for _, sp := range s.spansIn(p.lo, p.hi) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if pts, err = s.parts(ctx, p, sp, pts); err != nil {
			return nil, err
		}
		if len(pts) == 1 {
			c, ok, err := s.candidates(&p.fs, pts[0])
			if err == nil && ok {
				out, err = s.collect(pts[0], c, p.lo, p.hi, &skip, want-len(out), out)
			}
			if err != nil {
				return nil, err
			}
		} else if out, err = s.collectMerged(p, pts, &skip, want-len(out), out); err != nil {
			return nil, err
		}
		if len(out) >= want {
			break
		}
	}
	return out, nil
}

// collectMerged is collect for a window of two parts, an archive and a
// segment of late arrivals: it merges them by ID.
func (s *Store) collectMerged(p *plan, pts []part, skip *uint64, want int, out []hit) ([]hit, error) {
	var lists [2][]hit
	var cs [2]ordSet
	var oks [2]bool
	var total uint64
	for i, pt := range pts {
		c, ok, err := s.candidates(&p.fs, pt)
		if err != nil {
			return nil, err
		}
		cs[i], oks[i] = c, ok
		if ok {
			n, err := s.count(pt, c, p.lo, p.hi)
			if err != nil {
				return nil, err
			}
			total += n
		}
	}
	if *skip >= total {
		*skip -= total
		return out, nil
	}
	// Both lists hold at most skip+want IDs, all within this window.
	need := int(*skip) + want
	for i, pt := range pts {
		if oks[i] {
			var zero uint64
			var err error
			if lists[i], err = s.collect(pt, cs[i], p.lo, p.hi, &zero, need, nil); err != nil {
				return nil, err
			}
		}
	}
	a, b := lists[0], lists[1]
	for want > 0 && (len(a) > 0 || len(b) > 0) {
		var h hit
		if len(b) == 0 || (len(a) > 0 && a[0].id.Compare(b[0].id) > 0) {
			h, a = a[0], a[1:]
		} else {
			h, b = b[0], b[1:]
		}
		if *skip > 0 {
			*skip--
			continue
		}
		out = append(out, h)
		want--
	}
	return out, nil
}

// walk calls fn with every part that may hold matches of p and its
// candidates, oldest last; a sealed segment wholly inside p's range goes
// to whole instead, when whole is set and returns true. It is the one walk
// behind Count, CountBy and Timeline. The caller holds s.swapMu for
// reading.
func (s *Store) walk(ctx context.Context, p *plan, fn func(pt part, c ordSet) error, whole func(sl *sealedSeg) bool) error {
	if (p.fs.none && !p.fs.missing) || p.lo.Compare(p.hi) >= 0 {
		return nil
	}
	var pts []part
	for _, sp := range s.spansIn(p.lo, p.hi) {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if pts, err = s.parts(ctx, p, sp, pts); err != nil {
			return err
		}
		for _, pt := range pts {
			if sl := pt.sl; whole != nil && sl != nil && p.lo.Compare(sl.firsts[0]) <= 0 && sl.last.Compare(p.hi) < 0 && whole(sl) {
				continue
			}
			c, ok, err := s.candidates(&p.fs, pt)
			if err == nil && ok {
				err = fn(pt, c)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// reading runs fn, a read, under s.swapMu. If fn fails on a sealed segment
// that was replaced under it, it runs fn again; if on a corrupt one, it
// rebuilds that segment from its records first.
func (s *Store) reading(fn func() error) error {
	for try := 0; ; try++ {
		s.swapMu.RLock()
		err := fn()
		s.swapMu.RUnlock()
		var sf *sealedFault
		if !errors.As(err, &sf) || try == 3 {
			return err
		}
		if !sf.stale {
			if rerr := s.repair(sf.sl); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
	}
}

// repair rebuilds the sealed segment sl, found corrupt, from its records
// and keeps it open until the next seal writes it anew.
func (s *Store) repair(sl *sealedSeg) error {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	if !s.current(sl) {
		return nil
	}
	w := sl.window
	s.opts.Logger.Errorf("activitystore: segment %d is corrupt; rebuilding it from its records", w)
	if err := s.set(windowKey(prefixDirty, w), nil); err != nil {
		return fmt.Errorf("activitystore: cannot repair segment %d: %w", w, err)
	}
	seg, err := s.rebuild(w)
	if err != nil {
		return err
	}
	s.repaired.Add(1)
	s.mu.Lock()
	delete(s.sealed, w)
	s.segs[w] = seg
	s.reorder()
	s.mu.Unlock()
	s.forget(sl)
	return nil
}

// Get returns the activity with the given ID, or an error wrapping
// ErrNotFound.
func (s *Store) Get(ctx context.Context, id ID) (Activity, error) {
	if s.rd != nil {
		return onReader(ctx, s, func() (Activity, error) { return s.getReader(ctx, id) })
	}
	acts, found, err := s.getMany(ctx, []ID{id})
	if err != nil {
		return Activity{}, err
	}
	if !found[0] {
		return Activity{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return acts[0], nil
}

// getMany reads the activities of ids, which may come in any order; found[i]
// is false when no activity has ids[i].
func (s *Store) getMany(ctx context.Context, ids []ID) ([]Activity, []bool, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var out []Activity
	var found []bool
	err := s.reading(func() error {
		out = make([]Activity, len(ids))
		found = make([]bool, len(ids))
		var at []int
		var hs []hit
		var pts []part
		for i, id := range ids {
			if !id.valid() {
				continue
			}
			w := id.UnixNano() / s.width
			sp, ok := s.spanOf(w)
			if !ok {
				continue
			}
			var err error
			if pts, err = s.parts(ctx, nil, sp, pts); err != nil {
				return err
			}
			for _, pt := range pts {
				ok, err := s.find(pt, id)
				if err != nil {
					return err
				}
				if ok {
					at = append(at, i)
					hs = append(hs, hit{id: id, arc: pt.arc})
					break
				}
			}
		}
		// fetch wants distinct hits, newest first.
		sorted := slices.Clone(hs)
		slices.SortFunc(sorted, func(a, b hit) int { return b.id.Compare(a.id) })
		sorted = slices.CompactFunc(sorted, func(a, b hit) bool { return a.id == b.id })
		acts, err := s.fetch(ctx, sorted, true)
		if err != nil {
			return err
		}
		for k, i := range at {
			j, _ := slices.BinarySearchFunc(sorted, hs[k].id, func(h hit, id ID) int { return id.Compare(h.id) })
			out[i], found[i] = acts[j], true
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, found, nil
}

// spanOf returns the span of window w.
func (s *Store) spanOf(w int64) (span, bool) {
	all := s.allSpans()
	i, ok := slices.BinarySearchFunc(all, w, func(sp span, w int64) int {
		switch {
		case sp.window > w:
			return -1
		case sp.window < w:
			return 1
		}
		return 0
	})
	if !ok {
		return span{}, false
	}
	return all[i], true
}

// fetch reads the activities of hs, which are newest first. The records in
// pebble are read with one iterator; those with copies are decoded from
// them. Records read from pebble or from archives go to the record cache if
// keep: pages a client may ask for again, not the chunks of a walk through
// every match, which would push them out. The caller holds s.swapMu for
// reading.
func (s *Store) fetch(ctx context.Context, hs []hit, keep bool) ([]Activity, error) {
	out := make([]Activity, len(hs))
	inPebble := 0
	for i := range hs {
		if hs[i].rec == nil && hs[i].arc == nil {
			inPebble++
		}
	}
	if inPebble == len(hs) {
		return out, s.fetchPebble(hs, nil, out, keep)
	}
	var at []int // the positions of the hits read from pebble
	if inPebble > 0 {
		at = make([]int, 0, inPebble)
	}
	var copied []byte   // the copies the activities decode from, in one buffer
	var groups [][2]int // hits of one archive: [from, to)
	for i := 0; i < len(hs); {
		if r := hs[i].rec; r != nil {
			if copied == nil {
				copied = make([]byte, 0, (len(r)+32)*(len(hs)-i)*5/4)
			}
			copied = append(copied, r...)
			if err := decodeRecord(hs[i].id, copied[len(copied)-len(r):len(copied):len(copied)], &out[i]); err != nil {
				return nil, &CorruptionError{Where: "record " + hs[i].id.String(), Err: err}
			}
			i++
			continue
		}
		if hs[i].arc == nil {
			at = append(at, i)
			i++
			continue
		}
		j := i + 1
		for j < len(hs) && hs[j].arc == hs[i].arc {
			j++
		}
		groups = append(groups, [2]int{i, j})
		i = j
	}
	if err := s.fetchGroups(ctx, hs, groups, out, keep); err != nil {
		return nil, err
	}
	if len(at) == 0 {
		return out, nil
	}
	return out, s.fetchPebble(hs, at, out, keep)
}

// bucketReads is the most archives of a bucket one page reads from at once.
const bucketReads = 8

// fetchGroups reads the activities of hits hs[g[0]:g[1]], each group from
// one archive, into out at the same positions. Archives in a bucket are
// read one at a time while the caches answer; once one group had to ask
// the server, the rest are read several at a time, since each such read
// waits for the network.
func (s *Store) fetchGroups(ctx context.Context, hs []hit, groups [][2]int, out []Activity, keep bool) error {
	one := func(g [2]int) error {
		ids := make([]ID, g[1]-g[0])
		for k := range ids {
			ids[k] = hs[g[0]+k].id
		}
		return s.fetchArchived(ctx, hs[g[0]].arc, ids, out[g[0]:g[1]], keep)
	}
	t, remote := s.tier.(*s3Tier)
	remote = remote && t.gets != nil
	for len(groups) > 0 {
		var before int64
		if remote {
			before = t.gets.Load()
		}
		if err := one(groups[0]); err != nil {
			return err
		}
		groups = groups[1:]
		if remote && t.gets.Load() != before {
			break
		}
	}
	if len(groups) == 0 {
		return nil
	}
	errs := make([]error, len(groups))
	sem := make(chan struct{}, bucketReads)
	var wg sync.WaitGroup
	for k, g := range groups {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[k] = one(g)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fetchPebble reads the records of the hits hs[at[k]] (of every hit when at
// is nil), whose IDs descend, into out at the same positions: those the
// record cache holds from it, the others with one iterator, which keep
// adds to the cache. The activities share one buffer.
func (s *Store) fetchPebble(hs []hit, at []int, out []Activity, keep bool) error {
	n := len(hs)
	if at != nil {
		n = len(at)
	}
	if n == 0 {
		return nil
	}
	var buf recordBuf
	buf.init(n)
	var missBuf [128]int
	// The k of the records to read from pebble.
	miss := s.records.take(n, func(k int) ID { return hs[posOf(at, k)].id }, &buf, missBuf[:0])
	if len(miss) > 0 {
		if err := s.readPage(hs, at, miss, &buf, keep); err != nil {
			return err
		}
	}
	for k := range n {
		p := posOf(at, k)
		if err := decodeRecord(hs[p].id, buf.get(k), &out[p]); err != nil {
			return &CorruptionError{Where: "record " + hs[p].id.String(), Err: err}
		}
	}
	return nil
}

// posOf returns at[k], or k when at is nil.
func posOf(at []int, k int) int {
	if at == nil {
		return k
	}
	return at[k]
}

// recordBuf holds the records of a page in one buffer, in any order.
type recordBuf struct {
	spanBuf [128][2]int
	spans   [][2]int // spans[k] is where record k lies in arena
	arena   []byte
	n       int
}

// init readies b for n records.
func (b *recordBuf) init(n int) {
	b.n = n
	b.spans = b.spanBuf[:]
	if n > len(b.spanBuf) {
		b.spans = make([][2]int, n)
	}
}

// put copies v in as record k.
func (b *recordBuf) put(k int, v []byte) {
	if b.arena == nil {
		b.arena = make([]byte, 0, (len(v)+32)*b.n*5/4)
	}
	b.spans[k] = [2]int{len(b.arena), len(b.arena) + len(v)}
	b.arena = append(b.arena, v...)
}

// get returns record k.
func (b *recordBuf) get(k int) []byte {
	sp := b.spans[k]
	return b.arena[sp[0]:sp[1]:sp[1]]
}

// readPage reads from pebble, with one iterator, the records of the hits
// hs[posOf(at, k)] for each k of miss (ascending, so their IDs descend) into
// buf, and into the record cache if keep.
func (s *Store) readPage(hs []hit, at, miss []int, buf *recordBuf, keep bool) error {
	s.recordReads.Add(int64(len(miss)))
	bounds := make([]byte, 0, 2*17+1)
	lower := recordKey(bounds, hs[posOf(at, miss[0])].id)
	upper := append(recordKey(lower[len(lower):], hs[posOf(at, miss[len(miss)-1])].id), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	var key [17]byte
	stepping := true
	for i, k := range miss {
		id := hs[posOf(at, k)].id
		rk := recordKey(key[:0], id)
		// While the records are adjacent keys (a page without filter),
		// step with Next. After the first gap, only seek: ascending seeks
		// let pebble step forward within each level before it searches,
		// which a Next in between would prevent.
		found := false
		if stepping && i > 0 {
			found = it.Next() && bytes.Equal(it.Key(), rk)
			stepping = found
		}
		if !found && (!it.SeekGE(rk) || !bytes.Equal(it.Key(), rk)) {
			if err := it.Error(); err != nil {
				return err
			}
			return &CorruptionError{Where: "record " + id.String(), Err: errors.New("indexed but missing")}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		buf.put(k, v)
		if keep {
			s.records.add(id, v)
		}
	}
	return nil
}
