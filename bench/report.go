package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
)

// target is one goal of the suite and whether this run met it.
type target struct {
	What string `json:"what"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func us(v float64) string {
	switch {
	case v >= 100_000:
		return fmt.Sprintf("%.0fms", v/1000)
	case v >= 10_000:
		return fmt.Sprintf("%.1fms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fms", v/1000)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func lat(l latency) string {
	if l.Runs == 0 {
		return "-"
	}
	s := fmt.Sprintf("%s / %s", us(l.P50), us(l.P99))
	if l.Runs >= 1000 {
		s += " / " + us(l.P999)
	} else {
		s += fmt.Sprintf(" (%d runs)", l.Runs)
	}
	return s
}

func comma(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// targets evaluates the suite's goals on r.
func (r *results) targets() []target {
	var ts []target
	ing := map[string]map[string]ingestResult{}
	for _, i := range r.Ingest {
		k := fmt.Sprintf("%s, %d writer(s)", i.Mode, i.Writers)
		if ing[k] == nil {
			ing[k] = map[string]ingestResult{}
		}
		ing[k][i.System] = i
	}
	for _, k := range []string{"NoSync, 1 writer(s)", "NoSync, 4 writer(s)", "Sync, 1 writer(s)", "Sync, 4 writer(s)"} {
		m := ing[k]
		if m == nil {
			continue
		}
		o, p, s := m[sysOurs].PerSecond, m[sysPebble].PerSecond, m[sysSQLite].PerSecond
		if p > 0 {
			ts = append(ts, target{"ingest " + k + ": ≥ 0.75x raw pebble", fmt.Sprintf("%.2fx", o/p), o >= 0.75*p})
		}
		if s > 0 {
			ts = append(ts, target{"ingest " + k + ": ≥ 6x SQLite", fmt.Sprintf("%.2fx", o/s), o >= 6*s})
		}
	}
	for _, q := range queries {
		m := r.Queries[q.id]
		if m == nil {
			continue
		}
		o, s := m[sysOurs], m[sysSQLite]
		switch q.kind {
		case kindNewest:
			if s.Runs > 0 {
				ts = append(ts, target{q.id + " " + q.name + ": p50 and p99 ≤ SQLite's",
					fmt.Sprintf("%s / %s vs %s / %s", us(o.P50), us(o.P99), us(s.P50), us(s.P99)), o.P50 <= s.P50 && o.P99 <= s.P99})
			}
			ts = append(ts, target{q.id + ": p50 < 100µs", us(o.P50), o.P50 < 100})
			if q.noIndex && s.Runs > 0 {
				ts = append(ts, target{q.id + ": p99 ≤ 1/4 of SQLite's", fmt.Sprintf("%.1fx faster", s.P99/o.P99), o.P99*4 <= s.P99})
			}
		default:
			if s.Runs > 0 {
				ts = append(ts, target{q.id + " " + q.name + ": ≥ 100x faster than SQLite (p50)", fmt.Sprintf("%.0fx", s.P50/o.P50), s.P50 >= 100*o.P50})
			}
		}
	}
	for _, q := range queries {
		if a, ok := r.Archived[q.id]; ok && q.kind == kindNewest {
			ts = append(ts, target{q.id + " on archives: p50 < 200µs (warm)", us(a.P50), a.P50 < 200})
		}
	}
	if len(r.Index) > 0 {
		tu := r.Index["type"] + r.Index["user_id"]
		all := 0.0
		for _, v := range r.Index {
			all += v
		}
		ts = append(ts, target{"index bytes/activity, type + user ≤ 6", fmt.Sprintf("%.2f", tu), tu <= 6})
		ts = append(ts, target{"index bytes/activity, all fields ≤ 12", fmt.Sprintf("%.2f", all), all <= 12})
	}
	if r.OpenSeconds > 0 {
		ts = append(ts, target{"open time < 1s", fmt.Sprintf("%.3fs", r.OpenSeconds), r.OpenSeconds < 1})
	}
	for _, x := range r.Reopen {
		if x.Err != "" {
			ts = append(ts, target{x.Case + ": ran", x.Err, false})
			continue
		}
		ts = append(ts, target{"fresh process, " + x.Case + ": first answer < 1s", fmt.Sprintf("%.0fms", x.FirstMS), x.FirstMS < 1000})
		if strings.Contains(x.Case, "CLI") {
			ts = append(ts, target{x.Case + ": peak RSS < 300 MB", fmt.Sprintf("%.0f MB", x.PeakRSSMB), x.PeakRSSMB < 300})
		}
	}
	return ts
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "activitystore bench: %s activities (seed %d), %.0f MB as JSON lines (%.0f B each); %s/%s, %d CPUs\n\n",
		comma(float64(r.N)), r.Seed, float64(r.JSONBytes)/1e6, float64(r.JSONBytes)/float64(r.N), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())

	fmt.Fprintf(w, "INGEST, batches of 1000 (activities/s, MB/s of JSON)\n")
	fmt.Fprintf(w, "  %-22s %-22s %-22s %-22s %10s %10s\n", "", sysOurs, sysPebble, sysSQLite, "vs pebble", "vs SQLite")
	rows := map[string]map[string]ingestResult{}
	var order []string
	for _, i := range r.Ingest {
		k := fmt.Sprintf("%s, %d writer(s), %s", i.Mode, i.Writers, comma(float64(i.Activities)))
		if rows[k] == nil {
			rows[k] = map[string]ingestResult{}
			order = append(order, k)
		}
		rows[k][i.System] = i
	}
	for _, k := range order {
		m := rows[k]
		cell := func(i ingestResult) string {
			if i.PerSecond == 0 {
				return "-"
			}
			return fmt.Sprintf("%s  %.0f", comma(i.PerSecond), i.MBPerSec)
		}
		ratio := func(of ingestResult, digits int) string {
			if of.PerSecond == 0 {
				return "-"
			}
			return fmt.Sprintf("%.*fx", digits, m[sysOurs].PerSecond/of.PerSecond)
		}
		fmt.Fprintf(w, "  %-22s %-22s %-22s %-22s %10s %10s\n", k, cell(m[sysOurs]), cell(m[sysPebble]), cell(m[sysSQLite]),
			ratio(m[sysPebble], 2), ratio(m[sysSQLite], 1))
	}

	if r.SettleSeconds > 0 {
		fmt.Fprintf(w, "after the load, the store sealed its windows and pebble stopped compacting in %.1fs (waited for before measuring)\n", r.SettleSeconds)
	}
	if len(r.Queries) > 0 {
		fmt.Fprintf(w, "\nQUERIES, hot data (p50 / p99 / p999; fewer than 1000 runs: the comparator hit its time budget)\n")
		fmt.Fprintf(w, "  %-34s %-28s %-30s %-30s %s\n", "", sysOurs, sysPebble, sysSQLite, "vs SQLite p50, p99")
		for _, q := range queries {
			m := r.Queries[q.id]
			o, p, s := m[sysOurs], m[sysPebble], m[sysSQLite]
			vs := "-"
			if s.Runs > 0 {
				vs = fmt.Sprintf("%.1fx, %.1fx", s.P50/o.P50, s.P99/o.P99)
			}
			fmt.Fprintf(w, "  %-34s %-28s %-30s %-30s %s\n", q.id+" "+q.name, lat(o), lat(p), lat(s), vs)
		}
	}
	if len(r.Disk) > 0 {
		fmt.Fprintf(w, "\nSIZE, bytes per activity on disk:")
		for i, name := range systemNames {
			if v, ok := r.Disk[name]; ok {
				if i > 0 {
					fmt.Fprintf(w, ",")
				}
				fmt.Fprintf(w, " %s %.0f", name, v)
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "index bytes per activity (bitmaps of the segments in pebble):")
		all := 0.0
		for _, f := range []string{"type", "user_id", "module", "action", "resource"} {
			fmt.Fprintf(w, " %s %.2f", f, r.Index[f])
			all += r.Index[f]
		}
		fmt.Fprintf(w, "; all %.2f\n", all)
	}
	if r.OpenSeconds > 0 {
		fmt.Fprintf(w, "open of the populated store: %.3fs\n", r.OpenSeconds)
	}
	if len(r.Reopen) > 0 {
		fmt.Fprintf(w, "\nREOPEN in a fresh process (Open, then Q1, then Q3l; wall is the whole process)\n")
		fmt.Fprintf(w, "  %-36s %9s %14s %9s %9s %10s %14s\n", "", "open", "first answer", "Q3l", "wall", "peak RSS", "rebuilt acts")
		for _, x := range r.Reopen {
			if x.Err != "" {
				fmt.Fprintf(w, "  %-36s failed: %s\n", x.Case, x.Err)
				continue
			}
			if strings.Contains(x.Case, "CLI") { // one command: its wall time is its answer
				fmt.Fprintf(w, "  %-36s %9s %12.0fms %9s %7.0fms %7.0f MB %14s\n", x.Case, "-", x.FirstMS, "-", x.WallMS, x.PeakRSSMB, "-")
				continue
			}
			fmt.Fprintf(w, "  %-36s %7.0fms %12.0fms %7.1fms %7.0fms %7.0f MB %14s\n", x.Case, x.OpenMS, x.FirstMS, x.Q3lMS, x.WallMS, x.PeakRSSMB, comma(float64(x.RebuiltActs)))
		}
	}
	r.printCompaction(w)
	fmt.Fprintf(w, "\npeak RSS %.0f MB\n", r.PeakRSSMB)
	ts := r.targets()
	if len(ts) > 0 {
		fmt.Fprintf(w, "\nTARGETS\n")
		for _, t := range ts {
			fmt.Fprintf(w, "  %-6s  %-62s %s\n", verdict(t.Met), t.What, t.Got)
		}
	}
}

// archiveGroup is one column group of the compaction table: the archived
// query rows of one location.
type archiveGroup struct {
	name string
	m    map[string]latency
}

func (r *results) archiveGroups() []archiveGroup {
	var gs []archiveGroup
	if r.Compaction != nil {
		gs = append(gs, archiveGroup{locLocal, r.Archived})
	}
	if r.S3 != nil {
		gs = append(gs, archiveGroup{locS3, r.S3.Archived}, archiveGroup{locReader, r.S3.Reader})
	}
	return gs
}

// printCompaction prints the compaction phase: with local archives only,
// one line and three columns; with the archives in a bucket too, a line per
// location and a column group per location.
func (r *results) printCompaction(w io.Writer) {
	gs := r.archiveGroups()
	if len(gs) == 0 {
		return
	}
	if c := r.Compaction; c != nil && r.S3 == nil {
		fmt.Fprintf(w, "\nCOMPACTION: %s activities/s (%.1fs); archives %.1f B/activity, %.4f of the JSON lines\n",
			comma(c.PerSecond), c.Seconds, c.BytesPerActiv, c.RatioJSON)
		fmt.Fprintf(w, "  %-34s %-28s %-28s %s\n", "", "hot", "archived", "archived, first run (cold)")
		for _, q := range queries {
			fmt.Fprintf(w, "  %-34s %-28s %-28s %s\n", q.id+" "+q.name, lat(r.Queries[q.id][sysOurs]), lat(r.Archived[q.id]), firstRun(r.Archived[q.id]))
		}
		return
	}
	fmt.Fprintf(w, "\nCOMPACTION, every window cold (activities/s, MB/s of archives written or uploaded)\n")
	line := func(loc string, c *compaction, verb string) {
		fmt.Fprintf(w, "  %-10s %s activities/s, %.1f MB/s %s (%.1fs); archives %.1f B/activity, %.4f of the JSON lines\n",
			loc, comma(c.PerSecond), c.MBPerSec, verb, c.Seconds, c.BytesPerActiv, c.RatioJSON)
	}
	if c := r.Compaction; c != nil {
		line(locLocal, c, "written")
	}
	if s := r.S3; s != nil && s.Compaction != nil {
		line(locS3, s.Compaction, "uploaded")
		fmt.Fprintf(w, "  %-10s SeaweedFS on this machine, started in %.1fs; compaction: %s\n", "", s.StartSeconds, s.CompactionRequests)
		if len(s.Archived) > 0 {
			fmt.Fprintf(w, "  %-10s archived queries: %s\n", "", s.QueryRequests)
		}
		if s.ReaderOpenSeconds > 0 {
			fmt.Fprintf(w, "  %-10s OpenReader in %.0fms; it and its queries: %s\n", locReader, s.ReaderOpenSeconds*1000, s.ReaderRequests)
		}
	}
	row := func(name, hot string, cell func(g archiveGroup) (string, string)) {
		b := fmt.Sprintf("  %-34s %-28s", name, hot)
		for _, g := range gs {
			a, cold := cell(g)
			b += fmt.Sprintf(" %-28s %-16s", a, cold)
		}
		fmt.Fprintln(w, strings.TrimRight(b, " "))
	}
	row("", "hot", func(g archiveGroup) (string, string) { return g.name, g.name + " cold" })
	for _, q := range queries {
		row(q.id+" "+q.name, lat(r.Queries[q.id][sysOurs]), func(g archiveGroup) (string, string) {
			return lat(g.m[q.id]), firstRun(g.m[q.id])
		})
	}
}

// firstRun is the first run of an archived row: what no cache held yet.
func firstRun(l latency) string {
	if l.Runs == 0 {
		return "-"
	}
	return us(l.First)
}
