package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
)

func (a *app) backupCommand() *cobra.Command {
	var to, server, token string
	c := &cobra.Command{
		Use:   "backup --to DIR",
		Short: "Write a consistent copy of a store, even while it is served",
		Long: `backup writes a consistent copy of the store into --to, a folder that must not
exist or be empty: pebble's checkpoint and the archive files, as of one instant,
while appends go on. Open the copy with --dir, or put it in place with restore.

With --server, the running server at that URL writes the copy (POST
/v1/admin/backup, with an admin's --token): --to is then a folder on the
server's machine. Without it, backup opens the store in --dir itself.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if to == "" {
				return errors.New("--to is required: the folder to write the copy into")
			}
			abs, err := filepath.Abs(to)
			if err != nil {
				return fmt.Errorf("--to %q: %v", to, err)
			}
			start := time.Now()
			if server != "" {
				if err := remoteBackup(c, server, token, abs); err != nil {
					return err
				}
			} else if err := a.withStore(false, nil, func(s *activitystore.Store) error {
				return s.Backup(c.Context(), abs)
			}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "backed up to %s in %.1fs\n", abs, time.Since(start).Seconds())
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the folder to write the copy into (new or empty)")
	c.Flags().StringVar(&server, "server", "", "back up the store of the running server at this URL instead of --dir")
	c.Flags().StringVar(&token, "token", "", "an admin's bearer token for --server")
	return c
}

// remoteBackup asks the server at server to back up into dir.
func remoteBackup(c *cobra.Command, server, token, dir string) error {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want a URL like http://127.0.0.1:8080", server)
	}
	u = u.JoinPath("/v1/admin/backup")
	body, _ := json.Marshal(map[string]string{"to": dir})
	req, err := http.NewRequestWithContext(c.Context(), http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("backup: %s", serverError(resp))
	}
	io.Copy(io.Discard, resp.Body)
	return nil
}

func (a *app) restoreCommand() *cobra.Command {
	var from string
	c := &cobra.Command{
		Use:   "restore --from BACKUP",
		Short: "Put a backup in place as the store in --dir",
		Long: `restore copies the backup in --from (written by backup) into --dir, which must
not exist or be empty, checks the copy with verify, and prints what it holds.
The backup itself is left as it was.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if from == "" {
				return errors.New("--from is required: the folder of the backup")
			}
			if _, err := os.Stat(filepath.Join(from, "db")); err != nil {
				return fmt.Errorf("--from %s: not a backup (no db folder)", from)
			}
			existed := false
			switch names, err := os.ReadDir(a.dir); {
			case err == nil && len(names) > 0:
				return fmt.Errorf("--dir %s is not empty: restore into a new or empty folder", a.dir)
			case err == nil:
				existed = true
			case !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("--dir %s: %v", a.dir, err)
			}
			if err := copyTree(from, a.dir); err != nil {
				// Take back what was copied, and only that.
				if existed {
					names, _ := os.ReadDir(a.dir)
					for _, n := range names {
						os.RemoveAll(filepath.Join(a.dir, n.Name()))
					}
				} else {
					os.RemoveAll(a.dir)
				}
				return fmt.Errorf("restore: %w", err)
			}
			return a.withStore(false, nil, func(s *activitystore.Store) error {
				if err := s.Verify(c.Context()); err != nil {
					return fmt.Errorf("restore: the copy in %s does not verify: %w", a.dir, err)
				}
				st, err := s.Stats(c.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "restored %d activities (%d archived) into %s\n", st.Activities, st.ArchivedActivities, a.dir)
				return nil
			})
		},
	}
	c.Flags().StringVar(&from, "from", "", "the folder of the backup")
	return c
}

// copyTree copies the files of the folder src into dst, synced.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(d.Name(), ".tmp") || d.Name() == "LOCK" {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
