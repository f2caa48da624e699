package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

const (
	// maxLineBytes bounds one line of an import: the largest activity the
	// store takes is well under it.
	maxLineBytes = 1 << 20
	// maxBatchInput bounds the input bytes of one Append batch, far under
	// activitystore.MaxBatchBytes.
	maxBatchInput = 32 << 20
	// listRejected is how many rejected lines the summary lists.
	listRejected = 20
)

func (a *app) importCommand() *cobra.Command {
	var batch int
	var progress bool
	c := &cobra.Command{
		Use:   "import [FILE|-]",
		Short: "Append activities from JSON lines",
		Long: `import appends the activities of a file of JSON lines, one activity object per
line, to the store in --dir (creating it if needed). With no FILE, or "-", it
reads standard input.

An object has the fields of the JSON form: type (required), user_id, module,
action, apicall, resource, details (an object) and the event time as time,
timestamp or created_at (RFC 3339); without a time, the activity takes the
time of the import. Blank lines are skipped, and so is a UTF-8 byte-order mark
at the start of the input.

Activities are appended in batches. A line that is not a JSON object, or whose
activity the store refuses, is rejected and the other lines are stored. The
summary on standard output gives the lines stored and rejected and lists the
first 20 rejected lines with their reasons. The exit status is 1 if a line was
rejected.

A progress bar goes to standard error when it is a terminal, or with
--progress; --progress=false turns it off.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if batch < 1 || batch > activitystore.MaxBatch {
				return fmt.Errorf("--batch %d: want 1 to %d", batch, activitystore.MaxBatch)
			}
			in, size, name := a.stdin, int64(-1), "standard input"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					size = fi.Size()
				}
				in, name = f, args[0]
			}
			if !c.Flags().Changed("progress") {
				progress = isTerminal(a.stderr)
			}
			return a.withStore(true, nil, func(s *activitystore.Store) error {
				imp := &importer{s: s, batchSize: batch}
				if progress {
					imp.bar = newBytesBar(a.stderr, size, "importing")
				}
				err := imp.run(c.Context(), in)
				if imp.bar != nil {
					imp.bar.Finish()
				}
				imp.summary(a.stdout)
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("import %s: interrupted (%d lines stored before it)", name, imp.stored)
				}
				if err != nil {
					return fmt.Errorf("import %s: %w (%d lines stored before it)", name, err, imp.stored)
				}
				if imp.nRejected > 0 {
					return fmt.Errorf("import %s: %d of %d lines rejected", name, imp.nRejected, imp.stored+imp.nRejected)
				}
				return nil
			})
		},
	}
	c.Flags().IntVar(&batch, "batch", 1000, "activities per append")
	c.Flags().BoolVar(&progress, "progress", false, "show a progress bar on standard error (default: when it is a terminal)")
	return c
}

// rejection is one line an import did not store.
type rejection struct {
	line   int
	reason string
}

// importer appends decoded lines in batches and keeps the tally.
type importer struct {
	s         *activitystore.Store
	batchSize int
	bar       *progressbar.ProgressBar

	batch      []activitystore.Activity
	lines      []int // the line number of each activity of batch
	batchBytes int
	stored     int
	// nRejected counts the rejected lines; rejected holds only the
	// listRejected of them with the lowest line numbers, in no order, so
	// that memory stays bounded whatever the input.
	nRejected int
	rejected  []rejection
}

// utf8BOM is the UTF-8 byte-order mark, which some tools write at the start
// of a text file.
const utf8BOM = "\xef\xbb\xbf"

// run reads in to the end and appends its lines. It returns an error only
// for what stops the import: a read error, a failing store or the end of
// ctx, which stops it at once, even within a long line or a read that
// waits; rejected lines are counted in imp.nRejected.
func (imp *importer) run(ctx context.Context, in io.Reader) error {
	r := bufio.NewReaderSize(&ctxReader{ctx: ctx, r: in}, 1<<16)
	bom, err := skipBOM(r)
	if err != nil {
		return err
	}
	if bom && imp.bar != nil {
		imp.bar.Add64(int64(len(utf8BOM)))
	}
	for n := 1; ; n++ {
		line, size, tooLong, err := readLine(r)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if imp.bar != nil && size > 0 {
			imp.bar.Add64(int64(size))
		}
		switch {
		case tooLong:
			imp.reject(n, fmt.Sprintf("longer than %d bytes", maxLineBytes))
		case len(line) > 0:
			imp.add(n, line)
		}
		if len(imp.batch) >= imp.batchSize || imp.batchBytes >= maxBatchInput || (err != nil && len(imp.batch) > 0) {
			if err := imp.flush(ctx); err != nil {
				return err
			}
		}
		if err != nil {
			return nil
		}
	}
}

// skipBOM consumes a UTF-8 byte-order mark at the start of r and reports
// whether there was one. It peeks past the first byte only when that byte
// may begin one, so that a short first line is not held up.
func skipBOM(r *bufio.Reader) (bool, error) {
	for n := 1; n <= len(utf8BOM); n++ {
		b, err := r.Peek(n)
		if len(b) < n || b[n-1] != utf8BOM[n-1] {
			if err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			return false, nil
		}
	}
	_, err := r.Discard(len(utf8BOM))
	return true, err
}

// add decodes line number n into the batch, or rejects it.
func (imp *importer) add(n int, line []byte) {
	if line[0] != '{' {
		imp.reject(n, "not a JSON object")
		return
	}
	var act activitystore.Activity
	if err := act.UnmarshalJSON(line); err != nil {
		imp.reject(n, decodeReason(err))
		return
	}
	imp.batch = append(imp.batch, act)
	imp.lines = append(imp.lines, n)
	imp.batchBytes += len(line)
}

// flush appends the batch. An activity the store refuses is rejected and
// the rest of the batch is appended again without it.
func (imp *importer) flush(ctx context.Context) error {
	batch, lines := imp.batch, imp.lines
	for len(batch) > 0 {
		_, err := imp.s.Append(ctx, batch...)
		var ve *activitystore.ValidationError
		if errors.As(err, &ve) && ve.Field != "" && ve.Index >= 0 && ve.Index < len(batch) {
			imp.reject(lines[ve.Index], fmt.Sprintf("%s %s", ve.Field, ve.Reason))
			batch = append(batch[:ve.Index], batch[ve.Index+1:]...)
			lines = append(lines[:ve.Index], lines[ve.Index+1:]...)
			continue
		}
		if err != nil {
			return err
		}
		imp.stored += len(batch)
		break
	}
	clear(imp.batch) // let the stored activities go
	imp.batch, imp.lines, imp.batchBytes = imp.batch[:0], imp.lines[:0], 0
	return nil
}

// decodeReason says why a line did not decode.
func decodeReason(err error) string {
	var ve *activitystore.ValidationError
	if errors.As(err, &ve) {
		if ve.Field == "" {
			return ve.Reason
		}
		return ve.Field + " " + ve.Reason
	}
	return strings.TrimPrefix(err.Error(), "activitystore: ")
}

// reject counts line n as rejected and keeps it if it is among the
// listRejected lowest line numbers so far. Rejections come in line order
// but for those Append finds, which come after the decode errors of their
// batch, so a later one may displace a kept one.
func (imp *importer) reject(n int, reason string) {
	imp.nRejected++
	if len(imp.rejected) < listRejected {
		imp.rejected = append(imp.rejected, rejection{n, reason})
		return
	}
	highest := 0
	for i, r := range imp.rejected {
		if r.line > imp.rejected[highest].line {
			highest = i
		}
	}
	if n < imp.rejected[highest].line {
		imp.rejected[highest] = rejection{n, reason}
	}
}

// summary writes the tally: lines stored and rejected, and the first
// rejected lines in line order.
func (imp *importer) summary(w io.Writer) {
	fmt.Fprintf(w, "%d lines stored, %d rejected\n", imp.stored, imp.nRejected)
	sorted := slices.Clone(imp.rejected)
	slices.SortFunc(sorted, func(a, b rejection) int { return cmp.Compare(a.line, b.line) })
	for _, r := range sorted {
		fmt.Fprintf(w, "line %d: %s\n", r.line, oneLineText(r.reason))
	}
	if more := imp.nRejected - len(sorted); more > 0 {
		fmt.Fprintf(w, "... and %d more\n", more)
	}
}

// oneLineText keeps s on one line.
func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// readLine returns the next line of r without its line break or the
// surrounding spaces, and the bytes it consumed. A line over maxLineBytes is
// consumed whole and returned empty with tooLong set. At the end of the
// input it returns io.EOF with the last line, if any.
func readLine(r *bufio.Reader) (line []byte, size int, tooLong bool, err error) {
	for {
		var chunk []byte
		chunk, err = r.ReadSlice('\n')
		size += len(chunk)
		if !tooLong {
			if len(line)+len(chunk) > maxLineBytes+2 { // +2: room for "\r\n"
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return bytes.TrimSpace(line), size, tooLong, err
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newBytesBar returns a progress bar on w counting bytes up to size; a
// negative size makes it a spinner.
func newBytesBar(w io.Writer, size int64, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionClearOnFinish(),
	)
}

// ctxReader reads from r until ctx ends, then fails with ctx's error, even
// while a read of r waits: that read is left to finish on its own.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	buf  []byte
	done chan readResult
}

type readResult struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if c.done == nil {
		c.done = make(chan readResult, 1)
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	go func() {
		n, err := c.r.Read(buf)
		c.done <- readResult{n, err}
	}()
	select {
	case <-c.ctx.Done():
		c.buf = nil // the pending read still owns it
		return 0, c.ctx.Err()
	case res := <-c.done:
		return copy(p, buf[:res.n]), res.err
	}
}
