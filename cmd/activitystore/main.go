// Command activitystore runs an activity store from the command line: it
// serves the HTTP API, imports JSON lines, queries, counts, charts, exports,
// follows a running server, and reports on, compacts and verifies a store.
//
// Usage:
//
//	activitystore serve    [--addr 127.0.0.1:8080] [--tokens FILE] [--retain 0] [--cold-after 7d] [--compact-every 1h] ...
//	activitystore import   [--batch 1000] [--progress] [FILE|-]
//	activitystore query    [filters] [--limit 50] [--skip N] [--cursor C] [--output table|json]
//	activitystore count    [filters]
//	activitystore timeline [filters] [--bucket 1h] [--width 50]
//	activitystore tail     [--server URL] [--token T] [filters] [--limit N] [--output table|json]
//	activitystore export   [filters] [--limit N] [--out FILE]
//	activitystore stats    [--output table|json]
//	activitystore compact  [--cold-after 7d]
//	activitystore verify
//	activitystore backup   --to DIR [--server URL --token T]
//	activitystore restore  --from BACKUP
//
// The filters are --type, --user, --module, --action, --resource (each
// repeatable), --system, --since and --until (RFC 3339, a date, or a
// duration back from now such as 24h or 7d).
//
// Every command but tail works on the store in --dir (./activitystore-data by
// default). A store whose archives are in a bucket needs the same
// --archives s3://bucket/prefix (and --node, --s3-* or the AWS_* variables)
// on every command. A store directory is open in one process at a time, so while
// serve runs, the other commands fail on its directory with "locked": use the
// HTTP API or tail instead.
//
// Run "activitystore help COMMAND" for the flags of each command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, the next one kills the process.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// defaultDir is the store directory when --dir is not given.
const defaultDir = "./activitystore-data"

// app holds what every command shares: the global flags and the streams.
type app struct {
	dir    string
	loc    location
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// run executes the command line args (without the program name) and returns
// the exit status: 0 on success, 1 on any failure, which it reports as one
// line on stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, errorLine(err))
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "activitystore",
		Short: "Store, query and serve platform activity",
		Long: `activitystore stores and serves the activity of a platform: who did what, when.

Every command but tail works on the store in --dir. A store directory can be
open in one process at a time: while "activitystore serve" runs on a directory,
the other commands fail on it with "locked"; go through the server's HTTP API
(or "activitystore tail") instead. serve and import create the directory; the
other commands want an existing store.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&a.dir, "dir", defaultDir, "the store directory")
	a.loc.register(root.PersistentFlags())
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return applyLocationEnv(c) }
	root.AddCommand(
		a.serveCommand(),
		a.importCommand(),
		a.queryCommand(),
		a.countCommand(),
		a.timelineCommand(),
		a.tailCommand(),
		a.exportCommand(),
		a.statsCommand(),
		a.compactCommand(),
		a.verifyCommand(),
		a.backupCommand(),
		a.restoreCommand(),
	)
	return root
}

// errorLine formats err as the one line a failing command prints:
// "activitystore: " and the message, with the library's own prefixes
// dropped and line breaks joined.
func errorLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "activitystore: ", "")
	var parts []string
	for l := range strings.Lines(msg) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return "activitystore: " + strings.Join(parts, "; ")
}

// withStore opens the store in a.dir, calls fn with it and closes it. With
// create false, a missing directory is an error rather than a new store.
func (a *app) withStore(create bool, opts *activitystore.Options, fn func(*activitystore.Store) error) (err error) {
	s, err := a.open(create, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", a.dir, cerr)
		}
	}()
	return fn(s)
}

// open opens the store in a.dir; see withStore. Without create, a
// directory that holds no store is an error and is left as it is.
func (a *app) open(create bool, opts *activitystore.Options) (*activitystore.Store, error) {
	if !create {
		fi, err := os.Stat(a.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("no store in %s (set --dir; import or serve create a store)", a.dir)
		case err != nil:
			return nil, err
		case !fi.IsDir():
			return nil, fmt.Errorf("%s is not a directory", a.dir)
		}
		o := activitystore.Options{}
		if opts != nil {
			o = *opts
		}
		o.MustExist = true
		opts = &o
	}
	o := activitystore.Options{}
	if opts != nil {
		o = *opts
	}
	if err := a.loc.apply(&o); err != nil {
		return nil, err
	}
	s, err := activitystore.Open(a.dir, &o)
	if errors.Is(err, activitystore.ErrNoStore) {
		return nil, fmt.Errorf("no store in %s (set --dir; import or serve create a store)", a.dir)
	}
	if errors.Is(err, activitystore.ErrLocked) {
		return nil, fmt.Errorf("open %s: the directory is locked by another process (a running serve? use its HTTP API)", a.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", a.dir, err)
	}
	return s, nil
}
