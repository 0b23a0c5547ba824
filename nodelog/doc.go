// Package nodelog is the node lifecycle log: one append-only log per node in
// which every shim records each transition of the tasks it serves (created,
// started, exec added and started, exited, oom, paused, resumed, deleted)
// before containerd is told, and from which node agents list the node's
// state and watch what follows without a gap.
//
// # Layout
//
// A log is a directory (DefaultDir, 0700) holding a head file and segment
// files seg-<first revision>.jsonl. Each segment starts with a header line,
// then a snapshot of every task and exec alive when it was started (lines
// marked "snapshot", copies of earlier records with their revisions), then
// records, one JSON line each, every one carrying its revision. The head is
// a small file that every writer maps shared and locks (flock) around each
// append: it holds the log's id, the next revision, the current segment and
// how many of its bytes are committed, and a flag set while a record is
// being written.
//
// # Guarantees
//
// Revisions are node-wide and gap-free: each append takes the next one under
// the lock. A Cursor names the last record a reader has seen; reading from it
// yields exactly the records with higher revisions, in revision order (so in
// order for every pod). Readers never lock and never write: they read only
// committed bytes, so a record a dead writer left half-written (or written
// but not committed, which the next writer truncates away) is never seen.
// An unparseable committed line is skipped and counted, never fatal.
//
// When the current segment passes Options.SegmentSize, the writer that
// crossed it starts the next segment (in the background, off the caller's
// path) with a fresh snapshot. A segment is deleted once its successor is
// older than Options.Retention; a cursor that points before the oldest
// segment left gets ErrExpired, meaning "list again".
//
// The log lives on tmpfs (/run): it outlives shims, containerd restarts and
// task deletion, not a reboot. Records are written, not fsynced.
//
// The package imports nothing of the shim's: the shim writes with Writer,
// node agents read with Reader (or the watchapi package built on it).
package nodelog
