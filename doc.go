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
//
// Ordinals follow arrival while a window takes activities. An activity that
// arrives out of ID order is marked late; queries merge the in-order run with
// the short sorted list of late ordinals, and a segment whose late list grows
// is renumbered in memory. Once a window has been closed for
// Options.SealAfter, its segment is sealed: renumbered in ID order and its
// bitmaps and ID column written to pebble in one batch with the removal of
// the window's dirty mark.
//
// # Durability and crashes
//
// Records are the truth. Every append batch writes its records and a dirty
// mark for each window it touches in one pebble batch, synced unless
// Options.NoSync is set; concurrent Appends share pebble's WAL syncs. The
// in-memory index is updated only after the batch is durable, so no query
// shows an activity a crash could take back. Open loads the sealed segments'
// indexes and rebuilds only the segments of dirty windows from their
// records; a sealed index that fails its checksums or checks is rebuilt from
// the records too (Stats.RepairedSegments counts them).
//
// # Caveats
//
// The indexes of all segments live in memory: about 16 bytes per activity
// for the ID columns plus the bitmaps (see Stats). Get finds an activity
// through the index, so like queries it never returns one that is not yet
// durable. Returned activities belong to the caller; the strings of one page
// share one buffer.
package activitystore
