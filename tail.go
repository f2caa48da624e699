package activitystore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
)

// ErrLagged is wrapped by the *LagError a Tail yields when activities it had
// not read yet left the backlog.
var ErrLagged = errors.New("activitystore: tail fell behind")

// LagError tells a Tail's consumer that it missed activities: it read more
// slowly than they were appended, and the backlog (Options.TailBacklog) moved
// past them. The tail goes on from Resume if the loop continues.
type LagError struct {
	// Missed counts the appended activities, matching or not, that left the
	// backlog unread; -1 when unknown, for a cursor of an earlier Open.
	Missed int64
	// Resume is the cursor of the oldest activity still in the backlog.
	Resume string
}

func (e *LagError) Error() string {
	if e.Missed < 0 {
		return "activitystore: tail fell behind: the cursor is from an earlier open of the store"
	}
	return fmt.Sprintf("activitystore: tail fell behind: %d activities left the backlog unread", e.Missed)
}

// Unwrap returns ErrLagged.
func (e *LagError) Unwrap() error { return ErrLagged }

// TailEvent is one activity delivered by Tail, with the cursor to resume
// after it.
type TailEvent struct {
	Activity Activity
	// Cursor resumes the tail just after this activity: pass it to Tail as
	// from. It is valid while the store stays open.
	Cursor string
}

// tailEntry is one append in the backlog: its ID and label value numbers,
// enough to filter without reading the record.
type tailEntry struct {
	id   ID
	vals [numFields]uint32
}

// tailLog is the backlog of recent appends that tails read from: a ring of
// the last len(ring) appends in the order they became visible. Appends never
// wait for tails; a tail that falls more than a ring behind is told so.
type tailLog struct {
	mu    sync.Mutex
	ring  []tailEntry   // nil until the first Tail call
	head  uint64        // position of the next append; entry p is ring[p%len(ring)]
	wake  chan struct{} // closed and replaced when entries are added
	epoch uint64        // random per Open, so that cursors of another Open are told apart
	size  int           // len(ring) once made
}

func (t *tailLog) init(size int) {
	var b [8]byte
	rand.Read(b[:])
	t.epoch = binary.LittleEndian.Uint64(b[:])
	t.wake = make(chan struct{})
	t.size = size
}

// push adds the appends of one batch, once they are visible.
func (t *tailLog) push(ids []ID, vals [][numFields]uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil {
		return
	}
	for i := range ids {
		t.ring[t.head%uint64(len(t.ring))] = tailEntry{id: ids[i], vals: vals[i]}
		t.head++
	}
	close(t.wake)
	t.wake = make(chan struct{})
}

// start turns the backlog on and returns the current head.
func (t *tailLog) start() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil {
		t.ring = make([]tailEntry, t.size)
	}
	return t.head
}

// read copies the entries from position pos on into dst, up to its capacity,
// and returns them with the position after them. lost counts the entries
// between pos and the oldest one still held; wake is closed at the next push.
func (t *tailLog) read(pos uint64, dst []tailEntry) (out []tailEntry, next, lost uint64, wake <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := uint64(len(t.ring))
	if t.head > n && pos < t.head-n {
		lost = t.head - n - pos
		pos = t.head - n
	}
	for pos < t.head && len(dst) < cap(dst) {
		dst = append(dst, t.ring[pos%n])
		pos++
	}
	return dst, pos, lost, t.wake
}

const tailCursorVersion = 1

func (t *tailLog) cursor(pos uint64) string {
	var b [17]byte
	b[0] = tailCursorVersion
	binary.BigEndian.PutUint64(b[1:], t.epoch)
	binary.BigEndian.PutUint64(b[9:], pos)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// parseCursor returns the position of a tail cursor, and false when the
// cursor is from another Open.
func (t *tailLog) parseCursor(c string) (uint64, bool, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != 17 || b[0] != tailCursorVersion {
		return 0, false, &QueryError{Field: "from", Reason: fmt.Sprintf("%q is not a tail cursor", c)}
	}
	if binary.BigEndian.Uint64(b[1:]) != t.epoch {
		return 0, false, nil
	}
	pos := binary.BigEndian.Uint64(b[9:])
	t.mu.Lock()
	head := t.head
	t.mu.Unlock()
	if pos > head {
		return 0, false, &QueryError{Field: "from", Reason: fmt.Sprintf("%q is past the newest activity", c)}
	}
	return pos, true, nil
}

// tailChunk is how many backlog entries a tail reads at a time, and
// tailBytes about the most record bytes it holds at a time: it reads the
// activities of its matches in batches sized from the records it has read,
// so that a consumer that stops reading holds little, however large the
// activities.
const (
	tailChunk = 256
	tailBytes = 256 << 10
)

// Tail streams the activities appended from now on that match q, in the order
// they became visible to queries (so never one a crash could take back). q's
// filters and time range apply and its Limit, when set, ends the stream after
// that many activities. A nil q matches everything. Tail checks q and from
// before it returns: a Skip, a page cursor or a malformed from is a
// *QueryError, and a closed store ErrClosed.
//
// With from empty, the tail starts with the appends after the call to Tail.
// With from a TailEvent.Cursor, it resumes just after that activity.
//
// Appends never wait for tails. The store keeps the last Options.TailBacklog
// appends (IDs and labels, about 40 bytes each) for tails to read; a consumer
// slower than that yields a *LagError (errors.Is ErrLagged) saying how many
// appends it missed and, if the loop goes on, resumes with the oldest one
// still kept. A cursor from an earlier Open gives a LagError with Missed -1.
// Activities deleted before the tail reads them are passed over.
//
// The sequence ends when ctx is done (with no error), when the loop breaks,
// and with ErrClosed when the store closes.
func (s *Store) Tail(ctx context.Context, q *Query, from string) (iter.Seq2[TailEvent, error], error) {
	if err := s.enterWrite(); err != nil {
		return nil, err
	}
	s.leave()
	if q == nil {
		q = s.Query()
	}
	pos := s.tail.start()
	var p plan
	var err error
	switch {
	case q.skip != 0:
		err = &QueryError{Field: "skip", Reason: "Tail takes no skip"}
	case q.after != "":
		err = &QueryError{Field: "cursor", Reason: "Tail takes no page cursor; pass a tail cursor as from"}
	default:
		p, err = q.plan(false)
	}
	known := true
	if err == nil && from != "" {
		var at uint64
		at, known, err = s.tail.parseCursor(from)
		if known {
			pos = at
		}
	}
	if err != nil {
		return nil, err
	}
	return func(yield func(TailEvent, error) bool) {
		if !known {
			_, next, _, _ := s.tail.read(0, nil)
			if !yield(TailEvent{}, &LagError{Missed: -1, Resume: s.tail.cursor(next)}) {
				return
			}
			pos = next
		}
		left := p.limit
		avg := MaxDetailsBytes // the record size assumed until one is read: the largest
		buf := make([]tailEntry, 0, tailChunk)
		var ids []ID
		var at []uint64
		for {
			ents, next, lost, wake := s.tail.read(pos, buf[:0])
			if lost > 0 {
				if !yield(TailEvent{}, &LagError{Missed: int64(lost), Resume: s.tail.cursor(pos + lost)}) {
					return
				}
			}
			if len(ents) == 0 {
				select {
				case <-wake:
					continue
				case <-ctx.Done():
					return
				case <-s.stop:
					yield(TailEvent{}, ErrClosed)
					return
				}
			}
			if p.fs.missing {
				p.fs.resolve(&s.dicts)
			}
			ids, at = ids[:0], at[:0]
			first := next - uint64(len(ents))
			for i := range ents {
				if p.matches(&ents[i]) {
					ids = append(ids, ents[i].id)
					at = append(at, first+uint64(i)+1)
				}
			}
			pos = next
			for k := 0; k < len(ids); {
				n := min(len(ids)-k, max(1, tailBytes/avg))
				acts, found, err := s.getMany(ctx, ids[k:k+n])
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					yield(TailEvent{}, err)
					return
				}
				size := 0
				for i := range acts {
					size += acts[i].Size()
				}
				avg = max(64, size/n)
				for i := range acts {
					if !found[i] {
						continue
					}
					if !yield(TailEvent{Activity: acts[i], Cursor: s.tail.cursor(at[k+i])}, nil) {
						return
					}
					acts[i] = Activity{} // let it go while the batch is consumed
					if p.limit > 0 {
						if left--; left == 0 {
							return
						}
					}
				}
				k += n
			}
		}
	}, nil
}

// matches reports whether a backlog entry passes p's filters and time range.
func (p *plan) matches(e *tailEntry) bool {
	if e.id.Compare(p.lo) < 0 || e.id.Compare(p.hi) >= 0 {
		return false
	}
	if p.fs.none && !p.fs.missing {
		return false
	}
	for f := range numFields {
		vs := p.fs.vals[f]
		if vs == nil {
			continue
		}
		if !slices.Contains(vs, e.vals[f]) {
			return false
		}
	}
	return true
}
