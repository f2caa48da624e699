package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
)

// filterParams are the query parameters that select activities; every query
// endpoint takes them.
var filterParams = []string{"type", "user", "module", "action", "resource", "since", "until"}

// withFilters returns the filter parameters and extra.
func withFilters(extra ...string) []string { return slices.Concat(filterParams, extra) }

// repeatable are the parameters that may be given more than once.
var repeatable = []string{"type", "user", "module", "action", "resource"}

// params are the query parameters of a request, checked against the names
// its endpoint takes.
type params url.Values

// parseParams parses the query string of r. A parameter not in allowed, or
// one that is not repeatable given twice, is a 400 naming it.
func parseParams(r *http.Request, allowed ...string) (params, error) {
	return parseQuery(r, true, allowed)
}

// parseKnownParams is parseParams for a route whose clients may send
// parameters of their own: those not in allowed are dropped, not refused.
func parseKnownParams(r *http.Request, allowed ...string) (params, error) {
	return parseQuery(r, false, allowed)
}

// parseQuery parses the query string of r. A parameter not in allowed is a
// 400 naming it if strict and dropped otherwise; one in allowed that is not
// repeatable given twice is a 400.
func parseQuery(r *http.Request, strict bool, allowed []string) (params, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, msg: "malformed query string: " + err.Error(), err: err}
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			if !strict {
				delete(vals, name)
				continue
			}
			return nil, badParam(clip(name), "unknown parameter %s: %s takes %s", clipped(name), clip(r.URL.Path), strings.Join(allowed, ", "))
		}
		if len(vals[name]) > 1 && !slices.Contains(repeatable, name) {
			return nil, badParam(name, "parameter %s is given %d times; it takes one value", clipped(name), len(vals[name]))
		}
	}
	return params(vals), nil
}

// one returns the value of name and whether it is present.
func (p params) one(name string) (string, bool) {
	v, ok := p[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// int returns the integer value of name, def when absent; it must be at
// least lo and at most hi.
func (p params) int(name string, def, lo, hi int) (int, error) {
	s, ok := p.one(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		if hi == math.MaxInt {
			return 0, badParam(name, "%s must be an integer of at least %d, not %s", name, lo, clipped(s))
		}
		return 0, badParam(name, "%s must be an integer from %d to %d, not %s", name, lo, hi, clipped(s))
	}
	return n, nil
}

// time returns the RFC 3339 time value of name and whether it is present.
func (p params) time(name string) (time.Time, bool, error) {
	s, ok := p.one(name)
	if !ok {
		return time.Time{}, false, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		hint := ""
		if strings.Contains(s, " ") {
			hint = ` (a "+" in the query string must be sent as %2B)`
		}
		return time.Time{}, false, badParam(name, "%s must be an RFC 3339 time, e.g. 2025-01-02T15:04:05Z, not %s%s", name, clipped(s), hint)
	}
	return t, true, nil
}

// query builds the query of the filter parameters, limited to who's
// activities unless who is an admin.
func (h *handler) query(p params, who Principal) (*activitystore.Query, error) {
	q := h.s.Query()
	if v, ok := p["type"]; ok {
		q.Types(v...)
	}
	if v, ok := p["module"]; ok {
		q.Modules(v...)
	}
	if v, ok := p["action"]; ok {
		q.Actions(v...)
	}
	if v, ok := p["resource"]; ok {
		q.Resources(v...)
	}
	users, err := scopeUsers(p["user"], who)
	if err != nil {
		return nil, err
	}
	if users != nil {
		q.Users(users...)
	}
	since, ok, err := p.time("since")
	if err != nil {
		return nil, err
	}
	if ok {
		q.Since(since)
	}
	until, ok, err := p.time("until")
	if err != nil {
		return nil, err
	}
	if ok {
		q.Until(until)
	}
	return q, nil
}

// scopeUsers returns the users a query of who may select, given the user
// filter asked: nil for all. A principal that is not an admin gets its own
// user, and a 403 for asking for anyone else.
func scopeUsers(asked []string, who Principal) ([]string, error) {
	if who.Admin {
		return asked, nil
	}
	for _, u := range asked {
		if u != who.UserID {
			return nil, forbidden("user", "user %s is not yours: a principal that is not an admin sees only the activities of its own user %q", clipped(u), who.UserID)
		}
	}
	return []string{who.UserID}, nil
}

// mayRead checks that who may see a.
func mayRead(a *activitystore.Activity, who Principal) error {
	if who.Admin || a.UserID == who.UserID {
		return nil
	}
	return forbidden("id", "activity %s belongs to another user: a principal that is not an admin sees only the activities of its own user %q", a.ID, who.UserID)
}

// ParseBucket parses a timeline bucket as GET /v1/timeline takes it: a
// whole number of days written Nd (N >= 1), or else a positive Go duration
// (90s, 15m, 1h). The command line's timeline --bucket takes the same.
func ParseBucket(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err == nil && days > 0 && days <= math.MaxInt64/int64(24*time.Hour) {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s is not a positive duration such as 90s, 15m, 1h or 7d", clipped(s))
	}
	return d, nil
}

// parseBucket is ParseBucket with the error of a bad bucket parameter.
func parseBucket(s string) (time.Duration, error) {
	d, err := ParseBucket(s)
	if err != nil {
		return 0, badParam("bucket", "bucket %v", err)
	}
	return d, nil
}
