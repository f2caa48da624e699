package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
	"github.com/spf13/cobra"
)

const filterHelp = `Filters: --type, --user, --module, --action and --resource keep activities
with one of the values given (each flag is repeatable); different flags must
all match. --system keeps system events (no user). --since and --until take an
RFC 3339 time, a date (UTC) or a duration back from now (24h, 7d).`

func (a *app) queryCommand() *cobra.Command {
	var f filters
	var limit, skip int
	var cursor, output string
	c := &cobra.Command{
		Use:   "query [filters]",
		Short: "List matching activities, newest first",
		Long: `query prints one page of the activities that match the filters, newest first:
at most --limit, after skipping --skip, after --cursor.

` + filterHelp + `

--output table prints the columns TIME, TYPE, USER, MODULE, ACTION, RESOURCE
and ID ("-" for an empty value). --output json prints
{"activities": [...], "next_cursor": "..."}, next_cursor empty on the last
page. When there are more matches, the cursor of the next page also goes to
standard error as "next cursor: CURSOR": pass it back with --cursor.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if limit < 1 || limit > activitystore.MaxLimit {
				return fmt.Errorf("--limit %d: want 1 to %d", limit, activitystore.MaxLimit)
			}
			if skip < 0 {
				return fmt.Errorf("--skip %d: want 0 or more", skip)
			}
			r, err := f.parse(time.Now())
			if err != nil {
				return err
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				q := f.query(s, r).Limit(limit).Skip(skip)
				if cursor != "" {
					q.After(cursor)
				}
				page, err := q.All(c.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					err = writePageJSON(a.stdout, page)
				} else {
					err = writeTable(a.stdout, page.Activities)
				}
				if err != nil {
					return err
				}
				if page.Next != "" {
					fmt.Fprintf(a.stderr, "next cursor: %s\n", page.Next)
				}
				return nil
			})
		},
	}
	f.register(c)
	c.Flags().IntVar(&limit, "limit", activitystore.DefaultLimit, fmt.Sprintf("activities per page, 1 to %d", activitystore.MaxLimit))
	c.Flags().IntVar(&skip, "skip", 0, "matches to pass over first")
	c.Flags().StringVar(&cursor, "cursor", "", "continue after the page that gave this cursor")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

// pageJSON is the JSON form of a page, as the HTTP API writes it.
type pageJSON struct {
	Activities []activitystore.Activity `json:"activities"`
	NextCursor string                   `json:"next_cursor"`
}

func writePageJSON(w io.Writer, page activitystore.Page) error {
	p := pageJSON{Activities: page.Activities, NextCursor: page.Next}
	if p.Activities == nil {
		p.Activities = []activitystore.Activity{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// tableTime is the format of the TIME column: UTC, milliseconds.
const tableTime = "2006-01-02T15:04:05.000Z07:00"

// tableHeader names the columns of the activity table.
var tableHeader = []string{"TIME", "TYPE", "USER", "MODULE", "ACTION", "RESOURCE", "ID"}

// tableRow returns the cells of a in the order of tableHeader.
func tableRow(a *activitystore.Activity) []string {
	return []string{
		a.Time.UTC().Format(tableTime), cell(a.Type), cell(a.UserID), cell(a.Module),
		cell(a.Action), cell(a.Resource), a.ID.String(),
	}
}

// cell is a table cell: "-" for an empty value, control characters as
// spaces so that a value stays in its cell.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// writeTable writes acts as an aligned table with a header.
func writeTable(w io.Writer, acts []activitystore.Activity) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	for i := range acts {
		fmt.Fprintln(tw, strings.Join(tableRow(&acts[i]), "\t"))
	}
	return tw.Flush()
}

func (a *app) countCommand() *cobra.Command {
	var f filters
	c := &cobra.Command{
		Use:   "count [filters]",
		Short: "Print how many activities match",
		Long: `count prints the number of activities that match the filters. It reads only
the indexes.

` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			r, err := f.parse(time.Now())
			if err != nil {
				return err
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				n, err := f.query(s, r).Count(c.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, n)
				return nil
			})
		},
	}
	f.register(c)
	return c
}

func (a *app) timelineCommand() *cobra.Command {
	var f filters
	var bucketFlag string
	var width int
	c := &cobra.Command{
		Use:   "timeline [filters]",
		Short: "Chart matching activities over time",
		Long: `timeline counts the activities that match the filters per interval of --bucket
(a Go duration like 90s, 15m or 1h, or a whole number of days like 1d or 7d,
as the HTTP API takes it) and draws one line per interval, oldest first: its start
(UTC), its count and a bar scaled so that the largest count fills --width
characters. Intervals start at multiples of the bucket since the Unix epoch, so
hours and days start on UTC hours and days. Without --since the chart starts
with the oldest match; without --until it ends with the newest.

` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bucket, err := parseBucket(bucketFlag)
			if err != nil {
				return err
			}
			if width < 1 || width > 1000 {
				return fmt.Errorf("--width %d: want 1 to 1000", width)
			}
			r, err := f.parse(time.Now())
			if err != nil {
				return err
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				buckets, err := f.query(s, r).Timeline(c.Context(), bucket)
				if err != nil {
					return err
				}
				return writeTimeline(a.stdout, buckets, bucket, width)
			})
		},
	}
	f.register(c)
	c.Flags().StringVar(&bucketFlag, "bucket", "1h", "the interval of one line: a Go duration (15m, 1h) or whole days (1d, 7d)")
	c.Flags().IntVar(&width, "width", 50, "the length of the longest bar, in characters")
	return c
}

// parseBucket reads a timeline --bucket as the HTTP API's bucket parameter
// does: a whole number of days written Nd, or else a positive Go duration.
func parseBucket(s string) (time.Duration, error) {
	d, err := httpapi.ParseBucket(s)
	if err != nil {
		return 0, fmt.Errorf("--bucket %w", err)
	}
	return d, nil
}

// writeTimeline draws one line per bucket: start, count and a bar of █
// scaled so that the largest count is width long. A bucket with any count
// gets at least one █.
func writeTimeline(w io.Writer, buckets []activitystore.Bucket, bucket time.Duration, width int) error {
	layout := "2006-01-02 15:04:05.999999999"
	switch {
	case bucket%(24*time.Hour) == 0:
		layout = time.DateOnly
	case bucket%time.Minute == 0:
		layout = "2006-01-02 15:04"
	}
	maxCount := 0
	for _, b := range buckets {
		maxCount = max(maxCount, b.Count)
	}
	digits := len(fmt.Sprint(maxCount))
	bw := bufio.NewWriter(w)
	for _, b := range buckets {
		n := 0
		if b.Count > 0 {
			n = max(1, int((int64(b.Count)*int64(width)+int64(maxCount)/2)/int64(maxCount)))
		}
		fmt.Fprintf(bw, "%-*s  %*d", len(layout), b.Start.UTC().Format(layout), digits, b.Count)
		if n > 0 {
			bw.WriteString("  " + strings.Repeat("█", n))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

func (a *app) exportCommand() *cobra.Command {
	var f filters
	var out string
	var limit int
	c := &cobra.Command{
		Use:   "export [filters]",
		Short: "Write matching activities as JSON lines",
		Long: `export writes every activity that matches the filters, newest first, one JSON
object per line, to standard output or to --out FILE. Its output is what
import reads.

` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (all) or more", limit)
			}
			r, err := f.parse(time.Now())
			if err != nil {
				return err
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				if out == "" {
					_, err := exportTo(c.Context(), a.stdout, f.query(s, r), limit)
					return err
				}
				n, err := exportFile(c.Context(), out, f.query(s, r), limit)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "exported %d activities to %s\n", n, out)
				return nil
			})
		},
	}
	f.register(c)
	c.Flags().StringVar(&out, "out", "", "the file to write (default: standard output)")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many activities (0: all)")
	return c
}

// exportFile writes the export to a temporary file next to path and renames
// it to path once complete, so that a failed export leaves no partial file.
func exportFile(ctx context.Context, path string, q *activitystore.Query, limit int) (n int, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return 0, fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if n, err = exportTo(ctx, f, q, limit); err != nil {
		return n, err
	}
	if err = f.Chmod(0o644); err != nil {
		return n, err
	}
	if err = f.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}

// exportTo writes the matches of q to w as JSON lines, at most limit of
// them unless limit is 0, and returns how many it wrote.
func exportTo(ctx context.Context, w io.Writer, q *activitystore.Query, limit int) (int, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	n := 0
	var line []byte
	for act, err := range q.Limit(limit).Iter(ctx) {
		if err != nil {
			return n, err
		}
		line = append(act.AppendJSON(line[:0]), '\n')
		if _, err := bw.Write(line); err != nil {
			return n, err
		}
		n++
	}
	return n, bw.Flush()
}
