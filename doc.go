// Package activitystore records and serves the activity of a platform: who
// did what, when. It is an embedded library on pebble and roaring bitmaps:
// appends are durable when they return, recent activity comes back newest
// first with limit/skip paging or cursors, and filters by type, user, module,
// action, resource and time touch only the matching records.
//
// # Basics
//
//	s, err := activitystore.Open(dir, nil)           // nil options: defaults
//	ids, err := s.Append(ctx, acts...)                // durable on return
//	a, err := s.Get(ctx, ids[0])
//	recent, err := s.Recent(ctx, 50, 0)               // limit, skip
//	page, err := s.Query().Types("model.deploy").Users("u-1").Since(t).All(ctx)
//	n, err := s.Query().Types("user.login").Since(t).Count(ctx)
//	buckets, err := s.Query().Since(t).Timeline(ctx, time.Hour) // counts per hour
//	counts, err := s.Query().Since(t).CountBy(ctx, "type")       // counts per type
//	live, err := s.Tail(ctx, s.Query().Types("model.deploy"), "")   // for ev, err := range live
//
// An Activity has an ID, an event Time, a Type (required), a UserID (empty
// for system events), a Module, an Action, an APICall, a Resource and JSON
// Details. Append validates a whole batch first and stores nothing if one
// activity is invalid; the *ValidationError names its index and field.
//
// # Order and paging
//
// Results are newest first by event time, ties by ID, whatever order the
// activities arrived in: late events and imports of old history take their
// place by time. Skip counts matches from the indexes without reading them.
// Page.Next is a cursor: a position, not an offset, so a walk with After
// never repeats or misses an activity while others are appended.
//
// # Counts, timelines and tails
//
// Count, CountBy and Timeline read only the indexes: a timeline adds up, per
// segment and bucket, the candidates' ordinals in the bucket's ID range, so
// a week of hourly counts costs a few hundred bitmap range counts and no
// record read. Tail follows appends live: the store keeps the IDs and labels
// of the last Options.TailBacklog appends in a ring that tails read at their
// own pace, so a slow consumer never holds memory or blocks an append; one
// that falls a whole ring behind is told how many it missed and gets a
// cursor to go on from.
//
// # IDs
//
// An ID is 128 bits in the UUID version-7 layout: the event time (Unix
// milliseconds, then the nanoseconds within the millisecond) followed by a
// store-wide sequence number. IDs order like the activities, never change,
// and are never reused: sequence numbers are reserved on disk a block at a
// time before use.
//
// # Storage
//
// Each activity is one pebble key, 'r' followed by the bitwise complement of
// its ID, so that a forward scan is newest first; the value holds the labels
// and Details. Activities are grouped into segments, one per event-time
// window (Options.SegmentWidth, 24h by default). A segment numbers its
// activities with dense ordinals and keeps, per value of each indexed field,
// a roaring bitmap of ordinals, plus the column ordinal -> ID. A query walks
// the segments of its time range newest first, combines the bitmaps (OR
// within a field, AND across fields), and reads only the records of the page.
// keys.go lists every key prefix.
//
// A window's segment is in one of three tiers, and every read (Get, All,
// Iter, Count, CountBy, Timeline, Tail) walks all three through one path:
//
//   - open: in memory, taking appends. Ordinals follow arrival; an activity
//     that arrives out of ID order is marked late, queries merge the in-order
//     run with the short sorted list of late ordinals, and a segment whose
//     late list grows is renumbered in memory.
//   - sealed: renumbered in ID order and written to pebble as a small
//     descriptor, one key per label value (its bitmap, and for a value
//     with at most 64 activities in the window their IDs too) and the ID
//     column in chunks of 1024, and one entry per user, with copies of the
//     records of a user with at most 64 activities there (see
//     Options.UserCopies). A read loads only the keys of the values it
//     filters on and the chunks that hold its matches (none for a sparse
//     value), through one cache bounded by Options.CacheBytes, and nothing
//     else of it is in memory. A user's entries sort by user, then newest
//     window first, so a light user's recent activity is read in one short
//     scan over its windows, with no record lookups.
//   - archived: in a file (below).
//
// A segment is sealed once its window has been closed for Options.SealAfter
// and a look of the background sealer (every Options.SealEvery) finds that
// it took no append since the previous look (or after ten looks), and every
// open segment is sealed by Close, in one pebble batch with the
// removal of the window's dirty mark. An append into a sealed window loads
// its index and opens it again until the next seal.
//
// # Memory and open time
//
// Open reads one descriptor per sealed segment and per archive, never an
// index or a record of a cleanly closed store; after a crash it rebuilds
// only the windows the crash left with unsealed activities (see below). The store's memory is then the open
// segments (Stats.OpenBytes: the windows still taking appends, about 25
// bytes per activity) plus the cache of sealed and archived data
// (Stats.CacheBytes, at most Options.CacheBytes), plus the records pages
// read, kept for the next pages (Stats.RecordCacheBytes, at most
// Options.RecordCacheBytes), plus pebble's block cache and memtables
// (Options.BlockCacheSize, Options.MemTableSize).

// # Archives and retention
//
// Compact moves every segment whose window ended Options.ColdAfter ago (7
// days by default) out of pebble into one archive file (see ARCHIVE.md in the
// repository): zstd-compressed blocks of records, newest first, with the
// details split into a column per JSON key, a block index, the segment's
// bitmaps and ID column, and a footer with a checksum per block and one for
// itself. The move is crash-safe: the file is written under a temporary name,
// synced, renamed and the folder synced before one pebble batch records the
// archive and deletes the window's keys; Open removes leftovers of an
// interrupted move. Options.CompactEvery runs Compact in the background.
//
// Every read spans both tiers with the same results: Get, queries with every
// filter, skip and cursors (a cursor taken before a compaction stays valid),
// Count and Iter. An archived segment's index and blocks are read on first
// use and kept in a cache bounded by Options.CacheBytes, so memory does not
// grow with the number of archives, and Open reads only one small record per
// archive. Late arrivals for an archived window go to pebble as usual and are
// merged into a new archive of that window at the next Compact.
//
// With Options.S3 the archives go to an S3-compatible bucket instead, under
// a folder per store (Options.Node, which is also part of every ID, so IDs
// of different stores never collide): each is uploaded, checked by size and
// MD5, and only then recorded; reads fetch footers, indexes and single
// blocks by range GET, through the same cache and an optional disk cache
// (S3Options.CacheDir), and retry failed requests within the caller's
// deadline. OpenReader opens a read-only store over every store's archives
// in a bucket, merged newest first, for query nodes.
//
// Options.RetainFor makes Compact delete windows that ended longer ago than
// that; DropBefore deletes whole windows on request. A window is deleted only
// when all of it is older than the cutoff.
//
// # Durability and crashes
//
// Records are the truth. Every append batch writes its records, a dirty
// mark for each window it touches and, per window, the list of its IDs (the
// append log) in one pebble batch, synced unless Options.NoSync is set;
// concurrent Appends share pebble's WAL syncs. The in-memory index is
// updated only after the batch is durable, so no query shows an activity a
// crash could take back. An open segment that has taken 65536 appends since
// it was last written is checkpointed by the background sealer: written in
// its sealed form, with its append log cleared, in one batch, and kept open.
// After a crash, Open rebuilds only the dirty windows: from their last
// written form plus the records their append log names, or, for a window
// never written, from all its records (Stats.RebuiltActivities counts the
// records read). A sealed index that fails its checksums or checks, at Open
// or when a read loads it, is rebuilt from the records and the read runs
// again (Stats.RepairedSegments counts them).
//
// # Disk faults
//
// Pebble and the archives use Options.FS (the operating system's by
// default), so a wrapper of it can inject faults; the tests inject EIO and
// ENOSPC on writes, syncs and reads of the log, the tables and the archives.
//
//   - A write or sync of pebble's log that fails makes every commit from
//     then on, and every commit in flight then, return an error wrapping
//     ErrWriteFailed (Append, sealing, Compact, DropBefore, Backup): the
//     store cannot tell what reached the disk, and pebble's log cannot take
//     another record after it. The store sees the failure first (it wraps
//     Options.FS for pebble's log files), tells pebble the call worked and
//     writes nothing more to the log, so pebble neither panics nor ends the
//     process, and the log on disk is what was written before the failure.
//     Nothing of a failed Append is indexed, so no query shows it; reads go
//     on. A failed Compact or DropBefore whose batch pebble applied shows
//     its result at once (reads of pebble see it) and keeps the archive
//     files. Close then only closes. The next Open replays the log: every
//     acknowledged activity is there, and each failed batch whole or not at
//     all. With NoSync an Append does not wait for the log, so the activities
//     acknowledged shortly before the failure (those still in the block
//     being written) may be missing after the reopen, as after a machine
//     crash; and pebble may have started a newer log (a memtable filled up)
//     before the failure surfaced, so that the log that ends inside a record
//     is no longer its newest, which pebble refuses to open: Open removes
//     the newer logs that hold no record and opens again. Store.WriteErr
//     reports the state.
//   - A failed write of pebble's tables (a flush or a compaction) is
//     retried by pebble in the background; appends go on into memory until
//     its limit on unflushed memtables makes them wait.
//   - A failed read fails the call that needed it, with the cause; nothing
//     is cached from it and the same call works once the disk does.
//   - A failed write, sync or rename of an archive, or sync of the archive
//     folder, fails Compact for that window with an error that names the
//     file; the window stays in pebble and the partial file is removed.
//   - Open returns the error and leaves the directory unlocked.
//   - A failed write or sync of pebble's MANIFEST ends the process, as
//     pebble decides (its state after such a failure is unknown); the next
//     Open recovers every acknowledged activity.
//
// # Caveats
//
// The store-wide value dictionaries keep every label value of the open
// segments and of the archives loaded for queries (Stats.Values); sealed
// segments are read by value and add nothing to them. A filter on a value
// the store has never seen loads the indexes of every archive in its time
// range to look for it. A corrupt archive file fails the queries that need
// it with an error that names it (errors.Is ErrCorrupt); the rest of the
// store keeps answering and Verify lists it. Get finds an activity through
// the index, so like queries it never returns one that is not yet durable.
// Returned activities belong to the caller; the strings of one page share
// one buffer.
package activitystore
