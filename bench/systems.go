package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	_ "github.com/mattn/go-sqlite3"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/internal/record"
)

// A system is one of the stores compared: it takes the same batches and
// answers the same queries.
type system interface {
	// append stores a batch whose activities already carry their IDs (the
	// comparators store them under the IDs the store gave).
	append(ctx context.Context, batch []activitystore.Activity) error
	// run answers q with parameters p and returns how many activities (or
	// counts) it produced.
	run(ctx context.Context, q *query, p *params) (int, error)
	close() error
}

// Names of the systems, in table order.
const (
	sysOurs   = "activitystore"
	sysPebble = "raw pebble"
	sysSQLite = "SQLite"
)

var systemNames = []string{sysOurs, sysPebble, sysSQLite}

// openSystem opens a fresh system of the given name in dir.
func openSystem(name, dir string, sync bool, now func() time.Time) (system, error) {
	switch name {
	case sysOurs:
		s, err := activitystore.Open(dir, storeOptions(sync, now))
		if err != nil {
			return nil, err
		}
		return &ours{s: s}, nil
	case sysPebble:
		return openPebble(dir, sync, now)
	case sysSQLite:
		return openSQLite(dir, sync)
	}
	return nil, fmt.Errorf("no system %q", name)
}

func storeOptions(sync bool, now func() time.Time) *activitystore.Options {
	return &activitystore.Options{NoSync: !sync, Now: now, ColdAfter: time.Nanosecond}
}

// ours is the store under test. While setIDs is set, append writes the IDs
// the store gives into the batch, for the comparators to store under.
type ours struct {
	s      *activitystore.Store
	setIDs bool
}

func (o *ours) append(ctx context.Context, batch []activitystore.Activity) error {
	ids, err := o.s.Append(ctx, batch...)
	if o.setIDs {
		for i := range ids {
			batch[i].ID = ids[i]
		}
	}
	return err
}

func (o *ours) close() error { return o.s.Close() }

func (o *ours) run(ctx context.Context, q *query, p *params) (int, error) {
	b := o.s.Query()
	if len(p.types) > 0 {
		b.Types(p.types...)
	}
	if p.user != "" {
		b.Users(p.user)
	}
	if p.module != "" {
		b.Modules(p.module)
	}
	if !p.since.IsZero() {
		b.Since(p.since)
	}
	if !p.until.IsZero() {
		b.Until(p.until)
	}
	switch q.kind {
	case kindCount:
		return b.Count(ctx)
	case kindCountBy:
		total := 0
		for _, t := range p.allTypes {
			n, err := o.s.Query().Types(t).Since(p.since).Count(ctx)
			if err != nil {
				return 0, err
			}
			total += n
		}
		return total, nil
	}
	page, err := b.Skip(q.skip).Limit(50).All(ctx)
	return len(page.Activities), err
}

// rawPebble holds the same records under the same keys with no index: its
// queries scan newest first and filter, the best plain pebble can do.
type rawPebble struct {
	db    *pebble.DB
	wopts *pebble.WriteOptions
}

func openPebble(dir string, sync bool, now func() time.Time) (*rawPebble, error) {
	o := storeOptions(sync, now)
	po, err := o.PebbleOptions()
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(256 << 20) // the store's default BlockCacheSize
	po.Cache = cache
	db, err := pebble.Open(dir, po)
	cache.Unref()
	if err != nil {
		return nil, err
	}
	w := pebble.NoSync
	if sync {
		w = pebble.Sync
	}
	return &rawPebble{db: db, wopts: w}, nil
}

func (r *rawPebble) append(_ context.Context, batch []activitystore.Activity) error {
	b := r.db.NewBatchWithSize(len(batch) * 400)
	defer b.Close()
	var k, v []byte
	for i := range batch {
		a := &batch[i]
		k = record.AppendKey(k[:0], a.ID)
		v = record.Append(v[:0], &record.Fields{Type: a.Type, UserID: a.UserID, Module: a.Module, Action: a.Action,
			APICall: a.APICall, Resource: a.Resource, Details: a.Details})
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
	}
	return r.db.Apply(b, r.wopts)
}

func (r *rawPebble) close() error { return r.db.Close() }

// idFloor is the smallest ID at or after unix nanoseconds ns, per the ID
// layout documented on activitystore.ID.
func idFloor(ns int64) [16]byte {
	ms, sub := uint64(ns/1e6), uint64(ns%1e6)
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], ms<<16|0x7000|sub>>8)
	binary.BigEndian.PutUint64(id[8:], 0b10<<62|(sub&0xff)<<54)
	return id
}

func (r *rawPebble) run(_ context.Context, q *query, p *params) (int, error) {
	opts := &pebble.IterOptions{LowerBound: []byte{record.Prefix}, UpperBound: []byte{record.Prefix + 1}}
	if !p.until.IsZero() {
		opts.LowerBound = record.AppendKey(nil, idFloor(p.until.UnixNano()))
	}
	if !p.since.IsZero() {
		opts.UpperBound = record.AppendKey(nil, idFloor(p.since.UnixNano()))
	}
	it, err := r.db.NewIter(opts)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var f record.Fields
	skip, n := q.skip, 0
	byType := map[string]int{}
	var out []activitystore.Activity
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		if err := record.Decode(v, &f); err != nil {
			return 0, err
		}
		if !p.match(&f) {
			continue
		}
		switch q.kind {
		case kindCount:
			n++
			continue
		case kindCountBy:
			byType[f.Type]++
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		id, _ := record.KeyID(it.Key())
		out = append(out, activitystore.Activity{ID: id, Time: activitystore.ID(id).Time(), Type: strings.Clone(f.Type),
			UserID: strings.Clone(f.UserID), Module: strings.Clone(f.Module), Action: strings.Clone(f.Action),
			APICall: strings.Clone(f.APICall), Resource: strings.Clone(f.Resource), Details: bytes.Clone(f.Details)})
		if len(out) == 50 {
			break
		}
	}
	if q.kind == kindCountBy {
		for _, c := range byType {
			n += c
		}
		return n, it.Error()
	}
	if q.kind == kindCount {
		return n, it.Error()
	}
	return len(out), it.Error()
}

// sqlite is SQLite in WAL mode with the indexes a competent user would
// create: (ts), (type, ts), (user_id, ts).
type sqlite struct {
	db     *sql.DB
	insert *sql.Stmt
	stmts  map[string]*sql.Stmt
}

func openSQLite(dir string, sync bool) (*sqlite, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	mode := "NORMAL"
	if sync {
		mode = "FULL"
	}
	dsn := fmt.Sprintf("file:%s?_journal_mode=WAL&_synchronous=%s&_busy_timeout=60000&_txlock=immediate",
		filepath.Join(dir, "activities.db"), mode)
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS activities (ts INTEGER NOT NULL, id BLOB NOT NULL, type TEXT NOT NULL,
			user_id TEXT NOT NULL, module TEXT NOT NULL, action TEXT NOT NULL, apicall TEXT NOT NULL,
			resource TEXT NOT NULL, details TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS activities_ts ON activities (ts)`,
		`CREATE INDEX IF NOT EXISTS activities_type_ts ON activities (type, ts)`,
		`CREATE INDEX IF NOT EXISTS activities_user_ts ON activities (user_id, ts)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			db.Close()
			return nil, err
		}
	}
	ins, err := db.Prepare(`INSERT INTO activities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &sqlite{db: db, insert: ins, stmts: map[string]*sql.Stmt{}}, nil
}

func (s *sqlite) append(ctx context.Context, batch []activitystore.Activity) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	st := tx.StmtContext(ctx, s.insert)
	for i := range batch {
		a := &batch[i]
		if _, err := st.ExecContext(ctx, a.Time.UnixNano(), a.ID[:], a.Type, a.UserID, a.Module, a.Action, a.APICall, a.Resource, string(a.Details)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func (s *sqlite) close() error {
	s.insert.Close()
	for _, st := range s.stmts {
		st.Close()
	}
	return s.db.Close()
}

const sqlCols = `ts, id, type, user_id, module, action, apicall, resource, details`

func (s *sqlite) stmt(text string) (*sql.Stmt, error) {
	if st := s.stmts[text]; st != nil {
		return st, nil
	}
	st, err := s.db.Prepare(text)
	if err != nil {
		return nil, err
	}
	s.stmts[text] = st
	return st, nil
}

func (s *sqlite) run(ctx context.Context, q *query, p *params) (int, error) {
	var where []string
	var args []any
	if len(p.types) > 0 {
		where = append(where, "type IN (?"+strings.Repeat(", ?", len(p.types)-1)+")")
		for _, t := range p.types {
			args = append(args, t)
		}
	}
	if p.user != "" {
		where = append(where, "user_id = ?")
		args = append(args, p.user)
	}
	if p.module != "" {
		where = append(where, "module = ?")
		args = append(args, p.module)
	}
	if !p.since.IsZero() {
		where = append(where, "ts >= ?")
		args = append(args, p.since.UnixNano())
	}
	if !p.until.IsZero() {
		where = append(where, "ts < ?")
		args = append(args, p.until.UnixNano())
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var text string
	switch q.kind {
	case kindCount:
		text = "SELECT COUNT(*) FROM activities" + cond
	case kindCountBy:
		text = "SELECT type, COUNT(*) FROM activities" + cond + " GROUP BY type"
	default:
		text = "SELECT " + sqlCols + " FROM activities" + cond + " ORDER BY ts DESC, rowid DESC LIMIT 50"
		if q.skip > 0 {
			text += fmt.Sprintf(" OFFSET %d", q.skip)
		}
	}
	st, err := s.stmt(text)
	if err != nil {
		return 0, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		switch q.kind {
		case kindCount:
			if err := rows.Scan(&n); err != nil {
				return 0, err
			}
		case kindCountBy:
			var t string
			var c int
			if err := rows.Scan(&t, &c); err != nil {
				return 0, err
			}
			n += c
		default:
			var a activitystore.Activity
			var ts int64
			var id []byte
			var details string
			if err := rows.Scan(&ts, &id, &a.Type, &a.UserID, &a.Module, &a.Action, &a.APICall, &a.Resource, &details); err != nil {
				return 0, err
			}
			n++
		}
	}
	return n, rows.Err()
}
