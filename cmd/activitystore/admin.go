package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
)

func (a *app) statsCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "stats",
		Short: "Print the counts and sizes of the store",
		Long: `stats prints the counts and sizes of the store in --dir: activities, segments,
archives, bytes on disk and of the indexes, distinct values per field. --output
json prints them as one JSON object with snake_case keys.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				st, err := s.Stats(c.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(toStatsJSON(st))
				}
				return writeStats(a.stdout, st)
			})
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return c
}

// statsJSON is the JSON form of activitystore.Stats.
type statsJSON struct {
	Activities         int              `json:"activities"`
	Segments           int              `json:"segments"`
	SealedSegments     int              `json:"sealed_segments"`
	OpenSegments       int              `json:"open_segments"`
	OpenBytes          int64            `json:"open_bytes"`
	RebuiltSegments    int              `json:"rebuilt_segments"`
	RebuiltActivities  int              `json:"rebuilt_activities"`
	SegmentLoads       int64            `json:"segment_loads"`
	LateOrdinals       int              `json:"late_ordinals"`
	RepairedSegments   int              `json:"repaired_segments"`
	DiskBytes          int64            `json:"disk_bytes"`
	IndexBytes         int64            `json:"index_bytes"`
	IndexBytesByField  map[string]int64 `json:"index_bytes_by_field"`
	IDColumnBytes      int64            `json:"id_column_bytes"`
	Values             map[string]int   `json:"values"`
	Archives           int              `json:"archives"`
	ArchivedActivities int              `json:"archived_activities"`
	ArchiveBytes       int64            `json:"archive_bytes"`
	CacheBytes         int64            `json:"cache_bytes"`
	CacheLimit         int64            `json:"cache_limit"`
}

func toStatsJSON(st activitystore.Stats) statsJSON {
	return statsJSON{
		Activities: st.Activities, Segments: st.Segments, SealedSegments: st.SealedSegments,
		OpenSegments: st.OpenSegments, OpenBytes: st.OpenBytes,
		RebuiltSegments: st.RebuiltSegments, RebuiltActivities: st.RebuiltActivities, SegmentLoads: st.SegmentLoads,
		LateOrdinals: st.LateOrdinals, RepairedSegments: st.RepairedSegments,
		DiskBytes: st.DiskBytes, IndexBytes: st.IndexBytes, IndexBytesByField: st.IndexBytesByField,
		IDColumnBytes: st.IDColumnBytes, Values: st.Values,
		Archives: st.Archives, ArchivedActivities: st.ArchivedActivities, ArchiveBytes: st.ArchiveBytes,
		CacheBytes: st.CacheBytes, CacheLimit: st.CacheLimit,
	}
}

// writeStats writes st as aligned lines: name, value, and sizes in binary
// units too.
func writeStats(w io.Writer, st activitystore.Stats) error {
	type row struct{ name, value, extra string }
	var rows []row
	line := func(name string, v int) { rows = append(rows, row{name, fmt.Sprint(v), ""}) }
	size := func(name string, n int64) { rows = append(rows, row{name, fmt.Sprint(n), "(" + humanBytes(n) + ")"}) }
	line("activities", st.Activities)
	line("archived activities", st.ArchivedActivities)
	line("segments", st.Segments)
	line("sealed segments", st.SealedSegments)
	line("open segments", st.OpenSegments)
	size("open bytes", st.OpenBytes)
	line("rebuilt at open", st.RebuiltSegments)
	line("records read to rebuild", st.RebuiltActivities)
	line("late ordinals", st.LateOrdinals)
	line("repaired segments", st.RepairedSegments)
	line("archives", st.Archives)
	size("disk bytes", st.DiskBytes)
	size("archive bytes", st.ArchiveBytes)
	size("index bytes", st.IndexBytes)
	for _, f := range activitystore.Fields {
		size("  "+f, st.IndexBytesByField[f])
	}
	size("id column bytes", st.IDColumnBytes)
	size("cache bytes", st.CacheBytes)
	size("cache limit", st.CacheLimit)
	rows = append(rows, row{"distinct values in memory", "", ""})
	for _, f := range activitystore.Fields {
		line("  "+f, st.Values[f])
	}
	nw, vw := 0, 0
	for _, r := range rows {
		nw, vw = max(nw, len(r.name)), max(vw, len(r.value))
	}
	bw := bufio.NewWriter(w)
	for _, r := range rows {
		fmt.Fprintln(bw, strings.TrimRight(fmt.Sprintf("%-*s  %*s  %s", nw, r.name, vw, r.value, r.extra), " "))
	}
	return bw.Flush()
}

// humanBytes writes n in binary units: "512 B", "1.5 KiB", "3.2 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

func (a *app) compactCommand() *cobra.Command {
	var coldAfter string
	c := &cobra.Command{
		Use:   "compact",
		Short: "Move cold segments into archive files",
		Long: `compact moves every segment whose event-time window ended --cold-after ago (7
days unless set) out of the database into one compressed archive file each,
and prints the archives and archived activities before and after. Every query
reads archived activities as before.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts := &activitystore.Options{}
			if coldAfter != "" {
				d, err := parseDuration(coldAfter)
				if err != nil || d <= 0 {
					return fmt.Errorf("--cold-after %q: want a positive duration like 24h or 7d", coldAfter)
				}
				opts.ColdAfter = d
			}
			return a.withStore(false, opts, func(s *activitystore.Store) error {
				before, err := s.Stats(c.Context())
				if err != nil {
					return err
				}
				if err := s.Compact(c.Context()); err != nil {
					return err
				}
				after, err := s.Stats(c.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "archives: %d -> %d, archived activities: %d -> %d of %d\n",
					before.Archives, after.Archives, before.ArchivedActivities, after.ArchivedActivities, after.Activities)
				return nil
			})
		},
	}
	c.Flags().StringVar(&coldAfter, "cold-after", "", "archive windows that ended this long ago, like 24h or 7d (default 7d)")
	return c
}

func (a *app) verifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check that the indexes and the records agree",
		Long: `verify checks the store in --dir: every record indexed once and right, every
index entry backed by a record, every archive file whole. It prints "ok", or
each problem on a line of its own and exits with status 1.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				err := s.Verify(c.Context())
				var ve *activitystore.VerifyError
				if errors.As(err, &ve) {
					for _, p := range ve.Problems {
						fmt.Fprintln(a.stdout, oneLineText(p))
					}
					return fmt.Errorf("verify: %d problems", len(ve.Problems))
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "ok")
				return nil
			})
		},
	}
}
