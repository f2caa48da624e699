package activitystore

import (
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configure a Store. The zero value (or nil) gives the defaults;
// Open never changes the caller's Options.
type Options struct {
	// NoSync makes Append return once the batch is in the operating system's
	// hands instead of on disk: a machine crash may lose the last moments of
	// appends, a process crash loses nothing. The default is false: every
	// Append is durable when it returns.
	NoSync bool

	// SegmentWidth is the event-time window of one segment. Wider segments
	// make smaller indexes; narrower ones make finer archiving. It is fixed
	// when the store is created; reopening with a different non-zero value is
	// an error. The default is 24h.
	SegmentWidth time.Duration

	// SealAfter is how long after its window ends a segment with new
	// activities is sealed (sorted, its index written to disk and dropped
	// from memory). Late arrivals after that reopen the segment until the
	// next seal; Close seals every segment. The default is 10 minutes.
	SealAfter time.Duration

	// SealEvery is how often the background sealer looks for segments to
	// seal. A due segment that took appends since the sealer's previous
	// look (a window being imported from history) waits for a look that
	// finds it idle, ten looks at most, so that it is sealed once, not
	// again and again as it fills. The default is 30 seconds.
	SealEvery time.Duration

	// MemTableSize is pebble's memtable size in bytes. The default is 64 MiB,
	// which keeps batched writes out of write stalls.
	MemTableSize uint64

	// BlockCacheSize is pebble's block cache in bytes. The default is 256 MiB.
	BlockCacheSize int64

	// Pebble, when set, is called with the pebble options the store is about
	// to use, after the defaults above are applied, to change anything else.
	// It must not change Comparer or Merger.
	Pebble func(*pebble.Options)

	// ColdAfter is the age, counted from the end of its window, after which
	// Compact moves a segment out of pebble into an archive file. The
	// default is 7 days.
	ColdAfter time.Duration

	// RetainFor, when positive, makes Compact delete every window that ended
	// more than RetainFor ago (see DropBefore). Zero keeps everything.
	RetainFor time.Duration

	// ArchiveDir is the folder of the archive files. The default is
	// "archive" inside the store's directory. The store owns the folder:
	// it deletes archive-named files in it that it does not refer to.
	ArchiveDir string

	// S3, when set, puts the archives in an S3-compatible bucket instead of
	// ArchiveDir, under S3.Prefix/node-<Node>/. Archives are written to a
	// staging file in the store's directory, uploaded and checked before
	// the store points to them.
	S3 *S3Options

	// Node is this store's number among the stores that archive into one
	// bucket, 0 to MaxNode. It is part of every ID the store assigns (see
	// ID), so that IDs stay unique across the stores, and names the
	// store's folder in the bucket. Two stores must not share a number:
	// with S3 set, Open claims the number in the bucket and fails with
	// ErrNodeTaken if another store holds it. The default is 0.
	Node int

	// PollEvery is how often a store opened with OpenReader lists the
	// bucket for new, replaced and removed archives. The default is 30
	// seconds; -1 never (call Refresh).
	PollEvery time.Duration

	// CacheBytes bounds the memory of the data reads load from sealed
	// segments (bitmaps, ID chunks) and archives (decompressed blocks and
	// indexes); the least recently used is evicted first. With the open
	// segments (Stats.OpenBytes) it is the memory of the store's indexes,
	// whatever the store's size. The default is 128 MiB.
	CacheBytes int64

	// RecordCacheBytes bounds the memory of the records that pages (All,
	// Recent, Get) read, kept for the next pages that hold them, the least
	// recently used evicted first. A page whose records it holds copies
	// them instead of seeking each in pebble or decompressing its archive
	// block. Records never change, so a kept one is never stale. Iter does
	// not fill it. The default is 32 MiB; -1 keeps none.
	RecordCacheBytes int64

	// UserCopies is how many activities a user may have in a window, at
	// most, for the window's sealed segment to keep a copy of their records
	// in the user's entry, and its archive a copy in its copy blocks
	// (ARCHIVE.md). A query for a user with few activities (most users of
	// most platforms) then reads its entries of all windows in one scan, or
	// one small block per archive, instead of one record or one large block
	// per activity, for about the records' size again for those activities
	// (on the bench data at 1M, archives of 58 bytes per activity instead
	// of 33). Compact holds at most 64 MiB of such copies in memory per
	// archive and puts the rest in a temporary file under the store's
	// folder. The default is 64, the most allowed; -1 keeps none.
	UserCopies int

	// CompactEvery, when positive, runs Compact in the background at that
	// interval until Close. Zero compacts only when Compact is called.
	CompactEvery time.Duration

	// TailBacklog is how many of the latest appends the store keeps for
	// Tail, about 40 bytes each, from the first Tail call on. A tail that
	// falls further behind is told it missed activities. The default is
	// 65536.
	TailBacklog int

	// MustExist makes Open fail with ErrNoStore, creating nothing, when the
	// directory holds no store, for tools that only read or maintain one.
	MustExist bool

	// FS is the file system of pebble and of the archives; the default is
	// the operating system's (vfs.Default). A wrapper of it, such as
	// pebble's errorfs, injects disk faults. The LOCK file is always taken
	// on the operating system's file system.
	FS vfs.FS

	// Logger receives pebble's log lines. The default discards info lines and
	// prints errors to standard error.
	Logger pebble.Logger

	// Now is the clock, for zero activity times, validation and sealing. The
	// default is time.Now.
	Now func() time.Time

	// Settings for tests, so that they can run in parallel across them.
	lateMin    int               // late ordinals that trigger a renumber at least; default 1024
	blockBytes int               // record bytes at which an archive block is closed; default 256 KiB
	format2    bool              // write archives in format 2, as the version before format 3 did
	copyMem    int               // bytes of copies an archive writer holds in memory before it spills them; 0 for arcfmt.MaxCopyBytes
	hook       func(step string) // called at each step of moving a segment into an archive
	checkpoint int               // logged activities after which an open segment is written; default 65536
	inline     int               // most activities of a value whose IDs a sealed segment keeps beside its bitmap; default 64, -1 none
}

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.SegmentWidth < 0 || (c.SegmentWidth > 0 && c.SegmentWidth < time.Second) {
		return c, fmt.Errorf("%w: SegmentWidth %s is below one second", ErrInvalidOptions, c.SegmentWidth)
	}
	if c.SegmentWidth > 1<<50 {
		return c, fmt.Errorf("%w: SegmentWidth %s is too large", ErrInvalidOptions, c.SegmentWidth)
	}
	if c.SealAfter < 0 || c.SealEvery < 0 || c.BlockCacheSize < 0 {
		return c, fmt.Errorf("%w: SealAfter, SealEvery and BlockCacheSize may not be negative", ErrInvalidOptions)
	}
	switch {
	case c.ColdAfter < 0:
		return c, fmt.Errorf("%w: ColdAfter %s is negative", ErrInvalidOptions, c.ColdAfter)
	case c.RetainFor < 0:
		return c, fmt.Errorf("%w: RetainFor %s is negative", ErrInvalidOptions, c.RetainFor)
	case c.CacheBytes < 0:
		return c, fmt.Errorf("%w: CacheBytes %d is negative", ErrInvalidOptions, c.CacheBytes)
	case c.RecordCacheBytes < -1:
		return c, fmt.Errorf("%w: RecordCacheBytes %d is below -1", ErrInvalidOptions, c.RecordCacheBytes)
	case c.CompactEvery < 0:
		return c, fmt.Errorf("%w: CompactEvery %s is negative", ErrInvalidOptions, c.CompactEvery)
	case c.UserCopies < -1 || c.UserCopies > inlineIDs:
		return c, fmt.Errorf("%w: UserCopies %d is outside [-1, %d]", ErrInvalidOptions, c.UserCopies, inlineIDs)
	case c.Node < 0 || c.Node > MaxNode:
		return c, fmt.Errorf("%w: Node %d is outside [0, %d]", ErrInvalidOptions, c.Node, MaxNode)
	case c.S3 != nil && c.ArchiveDir != "":
		return c, fmt.Errorf("%w: both S3 and ArchiveDir are set", ErrInvalidOptions)
	case c.TailBacklog < 0 || c.TailBacklog > 1<<26:
		return c, fmt.Errorf("%w: TailBacklog %d is outside [0, %d]", ErrInvalidOptions, c.TailBacklog, 1<<26)
	}
	if c.TailBacklog == 0 {
		c.TailBacklog = 65536
	}
	switch {
	case c.PollEvery == 0:
		c.PollEvery = 30 * time.Second
	case c.PollEvery < -1:
		return c, fmt.Errorf("%w: PollEvery %s is negative", ErrInvalidOptions, c.PollEvery)
	}
	if c.S3 != nil {
		s3, err := c.S3.withDefaults()
		if err != nil {
			return c, err
		}
		c.S3 = &s3
	}
	if c.ColdAfter == 0 {
		c.ColdAfter = 7 * 24 * time.Hour
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 128 << 20
	}
	if c.RecordCacheBytes == 0 {
		c.RecordCacheBytes = 32 << 20
	}
	if c.MemTableSize != 0 && (c.MemTableSize < 1<<20 || c.MemTableSize >= 4<<30) {
		return c, fmt.Errorf("%w: MemTableSize %d is outside [1 MiB, 4 GiB)", ErrInvalidOptions, c.MemTableSize)
	}
	if c.SealAfter == 0 {
		c.SealAfter = 10 * time.Minute
	}
	if c.SealEvery == 0 {
		c.SealEvery = 30 * time.Second
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = 64 << 20
	}
	if c.BlockCacheSize == 0 {
		c.BlockCacheSize = 256 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.lateMin == 0 {
		c.lateMin = 1024
	}
	if c.blockBytes == 0 {
		c.blockBytes = 256 << 10
	}
	if c.checkpoint == 0 {
		c.checkpoint = 1 << 16
	}
	if c.inline == 0 {
		c.inline = inlineIDs
	}
	c.inline = max(c.inline, 0)
	if c.UserCopies == 0 {
		c.UserCopies = inlineIDs
	}
	if c.Logger == nil {
		c.Logger = quietLogger{}
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	return c, nil
}

// pebbleOptions returns the pebble options for this workload: appends of
// whole batches, point reads in key order.
func (o *Options) pebbleOptions() *pebble.Options {
	po := &pebble.Options{
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		Logger:                      commitLogger{o.Logger},
		FS:                          o.FS,
	}
	po.CompactionConcurrencyRange = func() (int, int) { return 1, 2 }
	// Bloom filters: a read of a sealed segment looks up one key per filter
	// value, and most light users are absent from most windows.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	return po
}

// defaultSegmentWidth is used when a new store is created with no
// SegmentWidth.
const defaultSegmentWidth = 24 * time.Hour

// commitLogger turns pebble's fatal commit error, a write or sync of its
// log that failed, into a panic the store's writes recover from (see
// Store.commit); every other fatal error stays fatal.
type commitLogger struct{ pebble.Logger }

// commitFailure is the panic value of a failed commit.
type commitFailure struct{ err error }

func (l commitLogger) Fatalf(format string, args ...any) {
	if strings.HasPrefix(format, "pebble: fatal commit error") {
		var err error
		if len(args) == 1 {
			err, _ = args[0].(error)
		}
		if err == nil {
			err = fmt.Errorf(format, args...)
		}
		panic(commitFailure{err})
	}
	l.Logger.Fatalf(format, args...)
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}

// PebbleOptions returns the pebble options Open would use for o, after the
// defaults and the Pebble hook, without a block cache (Open adds one of
// BlockCacheSize). It lets a comparison run plain pebble on equal terms.
func (o *Options) PebbleOptions() (*pebble.Options, error) {
	c, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	po := c.pebbleOptions()
	if c.Pebble != nil {
		c.Pebble(po)
	}
	return po, nil
}
