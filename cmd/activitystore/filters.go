package main

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
)

// filters are the query filter flags shared by query, count, timeline,
// export and tail.
type filters struct {
	types, users, modules, actions, resources []string
	system                                    bool
	since, until                              string
}

func (f *filters) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringArrayVar(&f.types, "type", nil, "keep activities of this type (repeatable: any of them)")
	fl.StringArrayVar(&f.users, "user", nil, "keep activities of this user ID (repeatable)")
	fl.StringArrayVar(&f.modules, "module", nil, "keep activities of this module (repeatable)")
	fl.StringArrayVar(&f.actions, "action", nil, "keep activities with this action (repeatable)")
	fl.StringArrayVar(&f.resources, "resource", nil, "keep activities on this resource (repeatable)")
	fl.BoolVar(&f.system, "system", false, "keep system events (no user); with --user, system events or those users")
	fl.StringVar(&f.since, "since", "", "keep activities at or after this time: RFC 3339, a date (2026-01-02, UTC) or a duration ago (24h, 7d)")
	fl.StringVar(&f.until, "until", "", "keep activities before this time (same forms as --since)")
}

// timeRange is a parsed --since/--until; a nil end is open.
type timeRange struct {
	since, until *time.Time
}

// parse checks the time flags, reading durations back from now.
func (f *filters) parse(now time.Time) (timeRange, error) {
	var r timeRange
	for _, x := range []struct {
		flag, v string
		dst     **time.Time
	}{{"since", f.since, &r.since}, {"until", f.until, &r.until}} {
		if x.v == "" {
			continue
		}
		t, err := parseTime(x.v, now)
		if err != nil {
			return r, fmt.Errorf("--%s %q: %w", x.flag, x.v, err)
		}
		*x.dst = &t
	}
	if r.since != nil && r.until != nil && r.until.Before(*r.since) {
		return r, fmt.Errorf("--until %s is before --since %s", r.until.Format(time.RFC3339Nano), r.since.Format(time.RFC3339Nano))
	}
	return r, nil
}

// query builds a query of s with the filters and the time range r.
func (f *filters) query(s *activitystore.Store, r timeRange) *activitystore.Query {
	q := s.Query()
	if len(f.types) > 0 {
		q.Types(f.types...)
	}
	if len(f.users) > 0 {
		q.Users(f.users...)
	}
	if f.system {
		q.System()
	}
	if len(f.modules) > 0 {
		q.Modules(f.modules...)
	}
	if len(f.actions) > 0 {
		q.Actions(f.actions...)
	}
	if len(f.resources) > 0 {
		q.Resources(f.resources...)
	}
	if r.since != nil {
		q.Since(*r.since)
	}
	if r.until != nil {
		q.Until(*r.until)
	}
	return q
}

// values encodes the filters and r as the query parameters of the HTTP API:
// one parameter per value, and an empty user for system events.
func (f *filters) values(r timeRange) url.Values {
	v := url.Values{}
	for _, p := range []struct {
		name string
		vals []string
	}{{"type", f.types}, {"user", f.users}, {"module", f.modules}, {"action", f.actions}, {"resource", f.resources}} {
		for _, x := range p.vals {
			v.Add(p.name, x)
		}
	}
	if f.system {
		v.Add("user", "")
	}
	if r.since != nil {
		v.Set("since", r.since.UTC().Format(time.RFC3339Nano))
	}
	if r.until != nil {
		v.Set("until", r.until.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// parseTime reads an RFC 3339 time, a date (UTC midnight) or a duration
// before now ("24h", "7d", "1d12h").
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (24h, 7d)")
	}
	return now.Add(-d), nil
}

// parseDuration reads a non-negative duration as time.ParseDuration does,
// with days too: "1d", "7d", "1d12h", "1.5d".
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration (like 90m, 24h, 7d)", s)
	if s == "" {
		return 0, bad
	}
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || !(n >= 0 && n <= maxDays) {
			return 0, bad
		}
		days, rest = time.Duration(n*float64(24*time.Hour)), s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || d < 0 || d > math.MaxInt64-days {
			return 0, bad
		}
	}
	return days + d, nil
}

// maxDays bounds the days of a duration, well inside a time.Duration.
const maxDays = 36_500

// checkOutput validates an --output value.
func checkOutput(s string) error {
	if s != "table" && s != "json" {
		return fmt.Errorf("--output %q: want table or json", s)
	}
	return nil
}
