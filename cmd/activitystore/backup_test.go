package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackupAndRestore backs up a store through a running server and from
// its folder, restores each copy, and checks that they count and export as
// the source does; bad uses are one-line errors.
func TestBackupAndRestore(t *testing.T) {
	fx := newImportFixture(t, 500)
	want := mustRun(t, "export", "--dir", fx.dir).stdout

	// From the folder, the store not open elsewhere.
	local := filepath.Join(t.TempDir(), "local")
	r := mustRun(t, "backup", "--dir", fx.dir, "--to", local)
	require.Contains(t, r.stdout, "backed up to "+local)
	restored := filepath.Join(t.TempDir(), "restored")
	r = mustRun(t, "restore", "--from", local, "--dir", restored)
	require.Contains(t, r.stdout, "restored 500 activities")
	require.Equal(t, want, mustRun(t, "export", "--dir", restored).stdout)

	// Through the server that has the store open.
	base, stop := startServe(t, "--dir", fx.dir)
	remote := filepath.Join(t.TempDir(), "remote")
	r = mustRun(t, "backup", "--server", base, "--to", remote)
	require.Contains(t, r.stdout, "backed up to "+remote)
	require.Equal(t, 0, stop().code)
	restored2 := filepath.Join(t.TempDir(), "restored2")
	mustRun(t, "restore", "--from", remote, "--dir", restored2)
	require.Equal(t, want, mustRun(t, "export", "--dir", restored2).stdout)

	for _, args := range [][]string{
		{"backup", "--dir", fx.dir},                // no --to
		{"backup", "--dir", fx.dir, "--to", local}, // not empty
		{"backup", "--dir", filepath.Join(t.TempDir(), "none"), "--to", filepath.Join(t.TempDir(), "x")}, // no store
		{"backup", "--server", "ftp://x", "--to", filepath.Join(t.TempDir(), "y")},
		{"restore", "--dir", filepath.Join(t.TempDir(), "z")}, // no --from
		{"restore", "--from", fx.dir + "-nope", "--dir", filepath.Join(t.TempDir(), "z")},
		{"restore", "--from", local, "--dir", restored}, // not empty
	} {
		r := runCmd(t, "", args...)
		requireOneLineError(t, r, args...)
	}
	// A --dir that is a file is refused and left alone.
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("keep"), 0o644))
	r = runCmd(t, "", "restore", "--from", local, "--dir", file)
	requireOneLineError(t, r)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b))

	// A failed restore leaves no half store behind.
	empty := t.TempDir()
	target := filepath.Join(t.TempDir(), "half")
	r = runCmd(t, "", "restore", "--from", empty, "--dir", target)
	requireOneLineError(t, r)
	_, err = os.Stat(target)
	require.ErrorIs(t, err, os.ErrNotExist, fmt.Sprint(strings.TrimSpace(r.stderr)))
}
