package main

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/activitystore/activitystore/internal/gen"
	"github.com/activitystore/activitystore/internal/record"
)

type queryKind int

const (
	kindNewest  queryKind = iota // the newest 50 matches
	kindCount                    // how many match
	kindCountBy                  // how many match per type
)

// query is one row of the query table.
type query struct {
	id, name string
	kind     queryKind
	skip     int
	// noIndex marks the queries a B-tree has no index for (or must skip
	// through): the store must be 4x faster than SQLite at p99 there.
	noIndex bool
	draw    func(r *rand.Rand, d *dataset) params
}

// params are one run's filter values, drawn from the data.
type params struct {
	types        []string
	user, module string
	since, until time.Time
	allTypes     []string // countBy: the types to count
}

func (p *params) match(f *record.Fields) bool {
	if len(p.types) > 0 && !slices.Contains(p.types, f.Type) {
		return false
	}
	if p.user != "" && f.UserID != p.user {
		return false
	}
	if p.module != "" && f.Module != p.module {
		return false
	}
	return true
}

// kindOf returns the generator kind of a type.
func kindOf(t string) gen.Kind {
	for _, k := range gen.Kinds {
		if k.Type == t {
			return k
		}
	}
	return gen.Kind{}
}

// userKinds are the types users (not the system) cause, most common first.
var userKinds = func() []string {
	var out []string
	for _, k := range gen.Kinds {
		if !k.System {
			out = append(out, k.Type)
		}
	}
	return out
}()

var queries = []*query{
	{id: "Q1", name: "newest 50", draw: func(*rand.Rand, *dataset) params { return params{} }},
	{id: "Q2c", name: "type=common newest 50", draw: func(*rand.Rand, *dataset) params {
		return params{types: []string{gen.Kinds[0].Type}}
	}},
	{id: "Q2r", name: "type=rare newest 50", draw: func(*rand.Rand, *dataset) params {
		return params{types: []string{gen.Kinds[len(gen.Kinds)-1].Type}}
	}},
	{id: "Q3h", name: "user=heaviest newest 50", draw: func(_ *rand.Rand, d *dataset) params {
		return params{user: d.userName(0)}
	}},
	{id: "Q3l", name: "user=light newest 50", draw: func(r *rand.Rand, d *dataset) params {
		return params{user: d.userName(2000 + r.IntN(1000))}
	}},
	{id: "Q4", name: "type∧user newest 50", noIndex: true, draw: func(r *rand.Rand, d *dataset) params {
		return params{types: []string{userKinds[1+r.IntN(4)]}, user: d.userName(r.IntN(20))}
	}},
	{id: "Q5", name: "3 types OR newest 50", noIndex: true, draw: func(r *rand.Rand, _ *dataset) params {
		p := r.Perm(len(gen.Kinds))
		return params{types: []string{gen.Kinds[p[0]].Type, gen.Kinds[p[1]].Type, gen.Kinds[p[2]].Type}}
	}},
	{id: "Q6", name: "type within one day newest 50", noIndex: true, draw: func(r *rand.Rand, d *dataset) params {
		day := d.end.Add(-time.Duration(1+r.IntN(d.days)) * 24 * time.Hour)
		return params{types: []string{gen.Kinds[r.IntN(8)].Type}, since: day, until: day.Add(24 * time.Hour)}
	}},
	{id: "Q7", name: "count type, last 24h", kind: kindCount, draw: func(r *rand.Rand, d *dataset) params {
		return params{types: []string{gen.Kinds[r.IntN(len(gen.Kinds))].Type}, since: d.end.Add(-24 * time.Hour)}
	}},
	{id: "Q8", name: "count by type, last 7 days", kind: kindCountBy, draw: func(_ *rand.Rand, d *dataset) params {
		all := make([]string, len(gen.Kinds))
		for i, k := range gen.Kinds {
			all[i] = k.Type
		}
		return params{since: d.end.Add(-7 * 24 * time.Hour), allTypes: all}
	}},
	{id: "Q9", name: "newest 50 after skip 10000", skip: 10000, noIndex: true, draw: func(*rand.Rand, *dataset) params { return params{} }},
	{id: "Q10", name: "module∧type∧user newest 50", noIndex: true, draw: func(r *rand.Rand, d *dataset) params {
		t := userKinds[r.IntN(6)]
		return params{types: []string{t}, module: kindOf(t).Module, user: d.userName(r.IntN(20))}
	}},
}
