package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serveConfig is what serve's flags set.
type serveConfig struct {
	addr, tokens    string
	logFormat       string
	tlsCert, tlsKey string
	store           activitystore.Options
	api             httpapi.Options
	compactEvery    time.Duration
	loc             *location // the global archive flags
	readOnly        bool
}

// envPrefix starts the environment variable of each serve flag:
// ACTIVITYSTORE_COLD_AFTER for --cold-after.
const envPrefix = "ACTIVITYSTORE_"

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// serveFlags registers serve's flags on c, each with its environment
// variable in its usage, and returns the config they fill.
func serveFlags(c *cobra.Command, loc *location) *serveConfig {
	cfg := &serveConfig{store: serveStoreOptions, api: serveAPIOptions, compactEvery: time.Hour, loc: loc}
	cfg.store.ColdAfter = 7 * 24 * time.Hour
	cfg.store.TailBacklog = 65536
	f := c.Flags()
	f.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "the address to listen on, host:port (port 0 picks a free port)")
	f.StringVar(&cfg.tokens, "tokens", "", "a file of bearer tokens, one \"TOKEN USER_ID [admin]\" per line")
	f.Var(durationFlag{&cfg.store.RetainFor, true}, "retain", "delete activities older than this, like 90d (0: keep everything)")
	f.Var(durationFlag{&cfg.store.ColdAfter, false}, "cold-after", "archive windows that ended this long ago, like 7d")
	f.Var(durationFlag{&cfg.compactEvery, true}, "compact-every", "archive and delete as set, this often in the background, like 1h (0: never)")
	f.StringVar(&cfg.store.ArchiveDir, "archive-dir", "", "the folder of the archive files (default: archive/ in --dir)")
	f.BoolVar(&cfg.readOnly, "read-only", false, "serve the archives of every node in the --archives bucket, read-only, with no store of its own (--dir is not used)")
	f.Var(durationFlag{&cfg.store.PollEvery, false}, "poll-every", "with --read-only, how often to look for new archives in the bucket, like 30s")
	f.Var(durationFlag{&cfg.store.SegmentWidth, false}, "segment-width", "the time window of one segment of a new store, like 24h (default 24h; an existing store keeps its own)")
	f.Var(sizeFlag{&cfg.store.CacheBytes}, "cache", "the store's cache of what reads load, like 64MiB")
	f.Var(sizeFlag{&cfg.store.BlockCacheSize}, "block-cache", "pebble's block cache, like 128MiB")
	f.Var(usizeFlag{&cfg.store.MemTableSize}, "memtable", "the size of one of pebble's memtables (up to 4 in memory), like 32MiB")
	f.BoolVar(&cfg.store.NoSync, "no-sync", false, "acknowledge appends before they are on disk (a machine crash may lose the last moments)")
	f.IntVar(&cfg.store.TailBacklog, "tail-backlog", cfg.store.TailBacklog, "the latest appends kept for tails to catch up from")
	f.Var(sizeFlag{&cfg.api.MaxBodyBytes}, "max-body", "the largest POST body, like 32MiB")
	f.IntVar(&cfg.api.MaxConcurrentPosts, "max-posts", cfg.api.MaxConcurrentPosts, "POSTs served at once")
	f.IntVar(&cfg.api.MaxConcurrentReads, "max-reads", cfg.api.MaxConcurrentReads, "reads (pages, counts, timelines) served at once")
	f.IntVar(&cfg.api.MaxStreams, "max-streams", cfg.api.MaxStreams, "tails, exports and legacy pages open at once")
	f.StringVar(&cfg.logFormat, "log-format", "text", "the format of the log on standard error: text or json")
	f.StringVar(&cfg.tlsCert, "tls-cert", "", "serve HTTPS with this certificate file (PEM; with --tls-key)")
	f.StringVar(&cfg.tlsKey, "tls-key", "", "the private key file of --tls-cert (PEM)")
	f.VisitAll(func(fl *pflag.Flag) {
		fl.Usage += " [$" + envName(fl.Name) + "]"
	})
	return cfg
}

// applyEnv sets every flag of c not given on the command line from its
// environment variable, if set; --dir too.
func applyEnv(c *cobra.Command) error {
	var err error
	set := func(fl *pflag.Flag) {
		if err == nil {
			err = setFromEnv(fl)
		}
	}
	c.Flags().VisitAll(set)
	c.InheritedFlags().VisitAll(set)
	return err
}

// setFromEnv sets flag fl from its environment variable, if it is set and
// the flag was not given.
func setFromEnv(fl *pflag.Flag) error {
	if fl.Changed || fl.Name == "help" {
		return nil
	}
	v, ok := os.LookupEnv(envName(fl.Name))
	if !ok {
		return nil
	}
	fl.Changed = true
	if err := fl.Value.Set(v); err != nil {
		return fmt.Errorf("invalid %s=%q (--%s): %v", envName(fl.Name), v, fl.Name, err)
	}
	return nil
}

// check reports the first setting that cannot work, naming its flag.
func (cfg *serveConfig) check() error {
	switch {
	case cfg.logFormat != "text" && cfg.logFormat != "json":
		return fmt.Errorf("invalid --log-format %q: want text or json", cfg.logFormat)
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return fmt.Errorf("--tls-cert and --tls-key go together: give both or neither")
	case cfg.store.TailBacklog <= 0:
		return fmt.Errorf("invalid --tail-backlog %d: want a positive number", cfg.store.TailBacklog)
	case cfg.api.MaxConcurrentPosts <= 0:
		return fmt.Errorf("invalid --max-posts %d: want a positive number", cfg.api.MaxConcurrentPosts)
	case cfg.api.MaxConcurrentReads <= 0:
		return fmt.Errorf("invalid --max-reads %d: want a positive number", cfg.api.MaxConcurrentReads)
	case cfg.api.MaxStreams <= 0:
		return fmt.Errorf("invalid --max-streams %d: want a positive number", cfg.api.MaxStreams)
	case cfg.readOnly && !cfg.loc.isBucket():
		return fmt.Errorf("--read-only serves a bucket: give --archives s3://bucket/prefix")
	case cfg.store.RetainFor > 0 && cfg.store.RetainFor < cfg.store.ColdAfter:
		// Allowed by the store, but surely not meant.
		return fmt.Errorf("--retain %s is shorter than --cold-after %s: nothing would ever be archived", fmtDuration(cfg.store.RetainFor), fmtDuration(cfg.store.ColdAfter))
	}
	if err := cfg.loc.apply(&cfg.store); err != nil {
		return err
	}
	if cfg.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert %s / --tls-key %s: %v", cfg.tlsCert, cfg.tlsKey, err)
		}
	}
	return nil
}

// logger returns the slog logger of --log-format on w.
func (cfg *serveConfig) logger(a *app) *slog.Logger {
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, nil))
	}
	return slog.New(slog.NewTextHandler(a.stderr, nil))
}

// durationFlag is a flag of a duration with days: "90m", "24h", "7d". Zero
// is allowed when zeroOK.
type durationFlag struct {
	d      *time.Duration
	zeroOK bool
}

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return fmtDuration(*f.d)
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	if d == 0 && !f.zeroOK {
		return fmt.Errorf("%q: want a positive duration (like 90m, 24h, 7d)", s)
	}
	*f.d = d
	return nil
}

func (durationFlag) Type() string { return "duration" }

// fmtDuration writes d in the largest of days, hours and minutes that
// divides it.
func fmtDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// sizeFlag and usizeFlag are flags of a size in bytes with a unit: "512MiB",
// "1GiB", "64MB", "4096".
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return fmtSize(uint64(*f.n))
}

func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%q is too large", s)
	}
	*f.n = int64(n)
	return nil
}

func (sizeFlag) Type() string { return "size" }

type usizeFlag struct{ n *uint64 }

func (f usizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return fmtSize(*f.n)
}

func (f usizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err == nil {
		*f.n = n
	}
	return err
}

func (usizeFlag) Type() string { return "size" }

// sizeUnits are the units parseSize takes, longest first.
var sizeUnits = []struct {
	name string
	n    uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// parseSize reads a positive size in bytes: a number, perhaps with a
// fraction, and a unit (KiB, MiB, GiB, TiB, or KB, MB, GB, TB, or K, M, G, T
// as the binary ones, or B); a bare number is bytes.
func parseSize(s string) (uint64, error) {
	bad := fmt.Errorf("%q is not a size (like 512MiB, 1GiB, 64MB)", s)
	num, mult := strings.TrimSpace(s), uint64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(num, u.name); ok {
			num, mult = strings.TrimSpace(n), u.n
			break
		}
	}
	x, err := strconv.ParseFloat(num, 64)
	if err != nil || !(x > 0) || x*float64(mult) >= 1<<63 {
		return 0, bad
	}
	n := uint64(x * float64(mult))
	if n == 0 {
		return 0, bad
	}
	return n, nil
}

// fmtSize writes n with the largest binary unit that divides it.
func fmtSize(n uint64) string {
	for _, u := range []struct {
		name string
		n    uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatUint(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}
