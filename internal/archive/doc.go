// Package archive is the archive file format: the file one cold window of
// activities moves into when the store compacts it. ARCHIVE.md at the
// repository root documents the bytes; keep the two in step.
//
// The package knows activities only as plain fields: an ID as its unix
// nanoseconds and sequence number, five label strings, an API call and
// details. What an ID is, which window it belongs to and how values are
// numbered store-wide is the caller's business.
//
// # Layers
//
//   - container.go: the header, the footer, the trailer and the sections
//     (CRC-32C, parts compressed as zstd frames), read by ReadFooter,
//     Footer.ReadIndex and Footer.ReadBlock.
//   - index.go: the index section, an ID column and per field the values
//     and their ordinals, decoded by DecodeIndex.
//   - block.go: the column codec of a block of records, BlockBuilder and
//     Block.
//   - json.go: the scanner that splits compact JSON objects into columns.
//   - writer.go: Writer, which writes a whole file.
//
// # Errors
//
// Bytes that are not a well-formed archive give a *CorruptError whose
// message says what is wrong but not which file: the caller names it. Other
// errors (reads, writes) are returned as they are.
//
// # Limits
//
// A reader checks every length against the file size and fixed limits
// before it allocates, and its zstd decoders are bounded the same way, so
// that no file makes it use much more memory than a legitimate archive
// would.
package archive
