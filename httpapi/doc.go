// Package httpapi serves an activitystore.Store over HTTP: the platform's
// existing activity endpoint, a JSON API with filters, counts and cursors,
// ingestion of single activities, arrays and NDJSON, an NDJSON export, a live
// tail as Server-Sent Events, a health check and Prometheus metrics.
//
//	s, err := activitystore.Open(dir, nil)
//	h := httpapi.New(s, httpapi.Options{Authenticate: httpapi.TokenAuth(tokens)})
//	err = http.ListenAndServe(":8080", h)
//
// Activities travel in the JSON form of activitystore.Activity: id (UUID
// text), type, user_id, module, action, apicall, resource, details (an
// object), and the event time as both timestamp and created_at (RFC 3339,
// UTC).
//
// # Endpoints
//
// GET /activity/activities/ (also without the trailing slash) is the
// platform's existing activity endpoint: a JSON array of the newest
// activities, newest first. It takes limit (default 50, at most 10000) and
// skip (default 0). So as not to break the clients it has always served, it
// ignores any other query parameter, unlike the other endpoints. It streams
// the array, 128 activities read at a time; an error after the first of them
// cuts it short (the array is then not closed).
//
//	curl 'http://localhost:8080/activity/activities/?limit=50&skip=0'
//
// GET /v1/activities returns one page of matches, newest first, as
// {"activities": [...], "next_cursor": "..."}. next_cursor is always present;
// it is the empty string on the last page, and otherwise goes back as cursor
// to get the next page. The filters, which count, count_by, timeline, export
// and tail take too, are type, user, module, action and resource (each
// repeatable: the values of one are ORed, different ones are ANDed; an empty
// user selects system events, which have no user), and since and until (RFC
// 3339; since is inclusive, until exclusive; a "+" in an offset must be sent
// as %2B). It also takes limit (default 50, at most 10000), skip and cursor.
// A page also stops once it holds about 8 MiB of JSON (a whole chunk of 128
// activities past that at most), with fewer than limit activities and the
// cursor of the rest, so that no page's memory grows with its limit.
//
//	curl 'http://localhost:8080/v1/activities?type=model.deploy&type=model.undeploy&user=u-42&since=2025-01-01T00:00:00Z&limit=100'
//	curl 'http://localhost:8080/v1/activities?type=model.deploy&cursor=AQGZ...'
//
// GET /v1/activities/{id} returns one activity.
//
//	curl http://localhost:8080/v1/activities/0190f3a2-7c1d-7a4b-8c00-000000000001
//
// GET /v1/count returns {"count": n}, the number of matches of the filters.
//
//	curl 'http://localhost:8080/v1/count?type=user.login&since=2025-01-01T00:00:00Z'
//
// GET /v1/count_by?field=F counts the matches per value of one field (type,
// user_id or user, module, action, resource), most frequent first:
// {"field": "type", "counts": [{"value": "user.login", "count": 12}, ...],
// "truncated": false}. The field of the answer is the name of the JSON form
// (user_id for user). It takes limit (default 1000, 1 to 100000): counts holds
// the limit most frequent values, and truncated is true when values were left
// out, false when counts holds them all.
//
//	curl 'http://localhost:8080/v1/count_by?field=type&since=2025-01-01T00:00:00Z'
//	curl 'http://localhost:8080/v1/count_by?field=user_id&limit=10'
//
// GET /v1/timeline?bucket=B counts the matches per interval of time, oldest
// first, zeros included: {"bucket": "1h", "buckets": [{"start": "...",
// "count": n}, ...]}. The bucket is a Go duration (90s, 15m, 1h) or a number
// of days (1d, 7d); the default is 1h. Buckets start at multiples of the
// bucket since the Unix epoch (UTC); since and until cut the first and last.
//
//	curl 'http://localhost:8080/v1/timeline?bucket=1d&since=2025-01-01T00:00:00Z&until=2025-02-01T00:00:00Z'
//
// POST /v1/activities stores activities and answers 201 with their IDs, in
// order: {"ids": [...]}. The body is one JSON object, a JSON array of them, or,
// with Content-Type application/x-ndjson (or application/ndjson,
// application/jsonl, application/x-jsonlines), one object per line, read as it
// arrives; blank lines are skipped. Any other Content-Type, or none, is read
// as JSON; a media type that does not parse is taken as its part before the
// first ';'. A UTF-8 byte-order mark at the start of the body is skipped. The
// event time may be
// named time, timestamp or created_at; without one it is the time of the
// request. An id, if present, must be an activity ID and is ignored: the store
// assigns IDs. A request is all or nothing: if one activity is refused,
// nothing of the request is stored. It may hold at most
// activitystore.MaxBatch (100000) activities and Options.MaxBodyBytes bytes
// (64 MiB by default); beyond either the answer is 413, and a bulk import
// larger than that must be split into several requests. An empty batch is a
// 400.
//
// A POST holds its whole batch in memory until it is stored, so at most
// Options.MaxConcurrentPosts (default 4) are served at once: ingestion takes
// up to about MaxConcurrentPosts × 3 × MaxBodyBytes of memory (768 MiB with
// the defaults). Other POSTs wait for their turn before their body is read;
// one whose request ends (e.g. the client's timeout) while it waits is a 503.
// A body must keep a pace: its first byte, and each 64 KiB after it, within
// 10 seconds of the previous ones, or the POST ends with a 408 and frees its
// turn.
//
//	curl -X POST http://localhost:8080/v1/activities -d '{"type":"model.deploy","user_id":"u-42","module":"models","action":"deploy","resource":"model/7","details":{"replicas":2}}'
//	curl -X POST http://localhost:8080/v1/activities -H 'Content-Type: application/x-ndjson' --data-binary @activities.ndjson
//
// GET /v1/export streams every match of the filters (no limit) as NDJSON, one
// activity per line, newest first, in constant memory. An error before the
// first line is an error answer. An error after it (e.g. the store closing)
// ends the stream with a last line {"error": "...", ...}, in the form of an
// error answer; a complete export ends without such a line, after its last
// activity. A stream cut by the connection lacks the end of its chunked
// encoding, which HTTP clients report as an error. HEAD answers the status
// GET would, e.g. 503 when the store is closed.
//
//	curl 'http://localhost:8080/v1/export?module=models&since=2025-01-01T00:00:00Z' > models.ndjson
//
// GET /v1/tail streams the matches appended from now on as Server-Sent
// Events, in the order they became visible:
//
//	id: <cursor>
//	event: activity
//	data: <activity JSON>
//
// It resumes just after the event whose id is given in the Last-Event-ID
// header (which EventSource clients send when they reconnect) or in the from
// parameter; the header wins when both are set. A client that falls behind the
// store's backlog gets
//
//	id: <cursor>
//	event: lagged
//	data: {"missed": n, "resume": "<cursor>"}
//
// (missed is -1 when unknown, for a cursor of an earlier run of the store)
// and the stream goes on with the oldest activity still held. After 15 seconds
// with nothing to send, a comment keeps the connection alive:
//
//	: ping
//
// limit ends the stream after that many activities. If the store closes, the stream ends with
// an "event: error" whose data is the JSON error.
//
// Export and tail outlive the server's write timeout, but each of their
// writes must complete within 30 seconds: a client that stops reading is
// dropped. The heartbeat keeps idle tails well within that.
//
//	curl -N 'http://localhost:8080/v1/tail?type=model.deploy'
//	curl -N -H 'Last-Event-ID: AQ...' http://localhost:8080/v1/tail
//
// POST /v1/admin/backup, for an admin, writes a consistent copy of the
// store into a folder of the server while writes go on
// (activitystore.Store.Backup); the body names it, an absolute path that
// must not exist or be empty:
//
//	curl -XPOST localhost:8080/v1/admin/backup -d '{"to":"/backups/2026-12-01"}'
//
// It answers {"dir": ..., "seconds": ...}; open the folder as a store, or
// copy it into place with "activitystore restore".
//
// GET /ui/ serves the web console: the newest activity with "load more", a
// detail pane, filters kept in the URL, a timeline that zooms by dragging,
// the top values of each field and a live mode. It asks for a bearer token,
// kept for the browser tab only, and shows what that principal may read.
//
// GET /openapi.json serves the OpenAPI 3.1 document of this API (kept as
// openapi.json in this package).
//
// GET /healthz answers 200 "ok" while the store serves reads and takes
// writes, and 503 once it is closed or refuses writes after a disk failure
// (activitystore.ErrWriteFailed; a POST then is a 503 too, and reads go on).
//
// GET /metrics serves the handler's metrics in the Prometheus text format,
// from a registry of its own (several handlers in one process do not clash):
//
//   - activitystore_http_request_duration_seconds{route,code}: latency per
//     route pattern (e.g. "GET /v1/activities/{id}"; "unmatched" for unknown
//     paths) and status code. Export and tail are in it only when they are
//     refused (status other than 200).
//   - activitystore_http_stream_duration_seconds{route}: how long the
//     streams of export and tail answered 200 lasted, in buckets up to an
//     hour.
//   - activitystore_http_appended_activities_total: activities stored by POST.
//   - activitystore_http_append_rejected_requests_total{code}: POST requests
//     refused, by status code; they stored nothing.
//   - read from the store at each scrape: activitystore_up (0 when the store
//     cannot answer), activitystore_activities,
//     activitystore_archived_activities, activitystore_segments,
//     activitystore_sealed_segments, activitystore_archives,
//     activitystore_disk_bytes{tier="pebble"|"archive"} (their sum is the
//     store's size on disk) and activitystore_cache_bytes.
//
// Query parameters that an endpoint does not take, and parameters other than
// the filters given twice, are a 400 that names them, so that typos do not
// go unnoticed. Wrong methods on a known path are a 405.
//
// # Limits per principal
//
// With Options.Authenticate set, no principal may take every turn: each may
// have half the POST turns (Options.MaxConcurrentPostsPerPrincipal), 16 tails
// open (Options.MaxTailsPerPrincipal) and 8 reads in flight of pages, export,
// count, count_by and timeline (Options.MaxReadsPerPrincipal). One more is a
// 429 with Retry-After: 1, at once. A page of /v1/activities also stops at
// about 8 MiB of JSON (see above), and a tail holds about 256 KiB of
// activities while its client is slow to read, so that no request's memory
// grows with its parameters.
//
// # Access
//
// Options.Authenticate names the Principal of each request; when it fails the
// answer is 401. An admin principal sees and writes every user's activities. A
// principal that is not an admin sees and writes only those of its own
// UserID: queries without a user filter are limited to it, and a request for
// anyone else's activities (a user filter naming another user, the ID of
// another user's activity, a POST of an activity with another user_id) is a
// 403 naming the parameter or field, never a silently filtered answer. A POST
// by such a principal of an activity without user_id stores it under the
// principal's user. A principal that is neither an admin nor has a user gets
// 403 everywhere.
//
// Tail cursors (the id of each event, which comes back as Last-Event-ID or
// from) and the missed count of a lagged event are positions in the sequence
// of every append to the store, not of the principal's own activities. A
// principal that is not an admin can therefore learn, from the cursors of two
// of its events or from missed, how many activities others appended in
// between; not what they were, nor who appended them.
//
// With no Authenticate, every request is served as an admin: put the handler
// behind your own access control. /healthz and /metrics never need
// authentication, nor does the 404 of an unknown path. They are served to
// anyone who reaches the handler: /healthz tells whether the store is up, and
// /metrics exposes store-wide counts and sizes (activities, archived ones,
// segments, archives, bytes on disk and in cache) and the counts of requests
// and of appended activities of every user. Keep them from clients that must
// not see those, e.g. with a rule of the proxy in front of the handler.
//
// # Errors
//
// Errors are JSON: {"error": "what went wrong", "field": "limit"}, with field
// omitted when no single parameter or field is at fault. A refused activity of
// a POST is named by "index" (its position in the array, from 0; 0 for a
// single object) or, in NDJSON, "line" (from 1). The statuses are 400 for a
// bad parameter or activity, 401, 403, 404 for an unknown ID (with "field":
// "id") or path, 405 (also for a write or tail on a store opened with
// activitystore.OpenReader), 408 for a POST body that came too slowly, 413 for
// a body over the limits, 429 past a limit per principal (with Retry-After),
// 500 for a failure of the store, and 503 when the store is closed, the
// request was canceled (including while it waited for its turn to POST), or
// the archive bucket did not answer in time (activitystore.ErrUnavailable,
// with Retry-After: 5). An error's text
// quotes at most 64 bytes of any input and is at most 1 KiB.
package httpapi
