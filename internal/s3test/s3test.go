// Package s3test runs a real SeaweedFS S3 server for tests (Start), and for
// tools such as the bench (Launch).
//
// Both build (once, via scripts/seaweedfs.sh, cached across runs) or reuse
// SeaweedFS's weed binary and run `weed server -s3` on free loopback ports
// in a data directory (Start: a temporary one), with a single admin
// identity so every request is authenticated. Set ACTIVITYSTORE_WEED to the
// path of a weed binary to skip the script.
//
// The server runs in its own process group and, on Linux, is killed if the
// test binary (or tool) dies (Pdeathsig), so a crashed run leaves no
// server behind.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// EnvWeed names the environment variable that, when set, gives the path of
// the weed binary to run instead of building it with scripts/seaweedfs.sh.
const EnvWeed = "ACTIVITYSTORE_WEED"

// readyTimeout bounds how long Launch and Restart wait for the S3 API.
const readyTimeout = 90 * time.Second

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// probeBucket is the bucket Launch and Restart write to, to check that the
// whole write path (filer lock ring, master, volume server) works. It is
// removed again once the server is ready.
const probeBucket = "s3test-probe"

// Server is a running SeaweedFS server with its S3 gateway. The zero value
// is not usable; get one from Start or Launch.
type Server struct {
	// Endpoint is the host:port of the S3 API (plain HTTP, path-style).
	Endpoint string
	// AccessKey and SecretKey are the credentials of the server's only
	// identity, which may do anything (Admin).
	AccessKey, SecretKey string
	// Dir is the server's folder: the one given to Launch (Start: a
	// tb.TempDir()).
	Dir string
	// LogPath is the file weed's stdout and stderr go to, inside Dir.
	LogPath string
	// Args is the command line weed runs with, binary first.
	Args []string

	env []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logf *os.File

	ports   []int
	buckets atomic.Int64
}

// Start runs a fresh SeaweedFS server with an S3 gateway in a tb.TempDir()
// (see Launch) and registers tb.Cleanup to stop it. It fails tb (with the
// tail of weed's log) if the server does not get ready in time.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, built, err := weedBinary()
	if err != nil {
		tb.Fatalf("s3test: %v", err)
	}
	if built > 5*time.Second {
		tb.Logf("s3test: built %s in %v", bin, built.Round(time.Second))
	}
	s, err := Launch(tb.TempDir())
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Launch runs a fresh SeaweedFS server with an S3 gateway on free loopback
// ports, with its configuration, data and log in dir (created if missing;
// a folder used before gets a new data folder), and waits until its S3
// API serves authenticated requests and writes. The caller calls Stop. The
// error holds the tail of weed's log if the server did not get ready in
// time.
func Launch(dir string) (*Server, error) {
	bin, _, err := weedBinary()
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	accessKey := "s3test" + randomHex(4)
	secretKey := randomHex(20)
	cfg := map[string]any{
		"identities": []any{map[string]any{
			"name":        "s3test",
			"credentials": []any{map[string]string{"accessKey": accessKey, "secretKey": secretKey}},
			"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
		}},
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	var lastErr error
	k := 0 // number of the data folder and log
	for attempt := 0; attempt < 3; attempt++ {
		// A fresh data folder for each attempt: the master's raft state
		// records its address.
		var dataDir string
		for ; ; k++ {
			dataDir = filepath.Join(dir, "data")
			if k > 0 {
				dataDir += strconv.Itoa(k)
			}
			err := os.Mkdir(dataDir, 0o755)
			if err == nil {
				break
			}
			if !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("s3test: %w", err)
			}
		}
		ports, err := freePorts(8)
		if err != nil {
			return nil, fmt.Errorf("s3test: free port: %w", err)
		}
		s := &Server{
			Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[6])),
			AccessKey: accessKey,
			SecretKey: secretKey,
			Dir:       dir,
			LogPath:   filepath.Join(dir, fmt.Sprintf("weed-%d.log", k)),
			ports:     ports,
			env: append(os.Environ(),
				// One volume per collection (each bucket is a
				// collection) instead of 7, so many buckets fit.
				"WEED_MASTER_VOLUME_GROWTH_COPY_1=1",
				// Don't hold the first volume allocation for
				// veteran volume servers that don't exist.
				"WEED_MASTER_VOLUME_GROWTH_ALLOCATION_DEFERRAL=0s",
				// weed reads *.toml from ., $HOME/.seaweedfs and
				// /etc/seaweedfs: keep a developer's own out.
				"HOME="+dir,
			),
		}
		k++
		s.Args = []string{
			bin,
			"-logtostderr",
			"server",
			"-dir=" + dataDir,
			"-ip=127.0.0.1",
			"-ip.bind=127.0.0.1",
			"-master.port=" + strconv.Itoa(ports[0]),
			"-master.port.grpc=" + strconv.Itoa(ports[1]),
			// Single-master mode: the master elects itself at
			// once, also when it resumes its raft state.
			"-master.peers=none",
			"-master.volumeSizeLimitMB=64",
			"-master.telemetry=false",
			"-volume.port=" + strconv.Itoa(ports[2]),
			"-volume.port.grpc=" + strconv.Itoa(ports[3]),
			"-volume.max=200",
			"-volume.preStopSeconds=0",
			"-filer.port=" + strconv.Itoa(ports[4]),
			"-filer.port.grpc=" + strconv.Itoa(ports[5]),
			"-filer.localSocket=" + socketPath("filer", ports[4]),
			"-s3",
			"-s3.port=" + strconv.Itoa(ports[6]),
			"-s3.port.grpc=" + strconv.Itoa(ports[7]),
			"-s3.port.iceberg=0",
			"-s3.port.lance=0",
			"-s3.iam=false",
			// Like S3, refuse writes to buckets that don't exist.
			"-s3.autoCreateBucket=false",
			"-s3.localSocket=" + socketPath("s3", ports[6]),
			"-s3.config=" + cfgPath,
		}
		if lastErr = s.start(); lastErr != nil {
			s.Stop()
			if isPortClash(s.logTail()) {
				continue // another process took one of the ports; retry
			}
			return nil, fmt.Errorf("s3test: start weed: %v\n%s", lastErr, s.logTail())
		}
		return s, nil
	}
	return nil, fmt.Errorf("s3test: start weed: %v", lastErr)
}

// NewClient returns a new minio-go client for the server: plain HTTP,
// path-style bucket addressing, authenticated as the admin identity.
func (s *Server) NewClient() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       false,
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
}

// Client is NewClient for tests: it fails tb on an error.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	c, err := s.NewClient()
	if err != nil {
		tb.Fatalf("s3test: minio client: %v", err)
	}
	return c
}

// MakeBucket creates a new bucket with a unique name and returns the name.
func (s *Server) MakeBucket(ctx context.Context) (string, error) {
	name := fmt.Sprintf("s3test-%d-%s", s.buckets.Add(1), randomHex(4))
	c, err := s.NewClient()
	if err != nil {
		return "", fmt.Errorf("s3test: minio client: %w", err)
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", fmt.Errorf("s3test: make bucket %s: %w", name, err)
	}
	return name, nil
}

// Bucket is MakeBucket for tests, with a 30-second timeout: it fails tb on
// an error.
func (s *Server) Bucket(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.MakeBucket(ctx)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return name
}

// Kill sends SIGKILL to the server's process group and waits until weed has
// exited. Data already acknowledged stays in the data directory; Restart
// starts the server again on it.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.reap()
}

// Stop stops the server gracefully: SIGTERM to its process group, then
// SIGKILL if weed has not exited after a few seconds. It waits for the exit
// and may be called any number of times.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.reap()
}

// Restart starts the server again, after Kill or Stop, on the same ports and
// data directory, and waits until it is ready. A running server is stopped
// first. Objects written before are still there.
//
// Restart takes at least 15 s: once it holds volumes, SeaweedFS's master
// refuses all volume assignments, and so all writes, for a warmup window of
// three heartbeat pulses after it becomes leader, and Restart waits until a
// write succeeds.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.restart(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// restart is Restart without a testing.TB.
func (s *Server) restart() error {
	s.Stop()
	if err := s.start(); err != nil {
		s.Stop()
		return fmt.Errorf("s3test: restart weed: %v\n%s", err, s.logTail())
	}
	return nil
}

// start runs weed and waits until it is ready. The caller stops the server
// if it fails.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== s3test %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.Args, " "))
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = s.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := spawn(cmd); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.logf = cmd, done, logf
	return s.waitReady(done)
}

// reap releases what start acquired once the process has exited. s.mu is
// held.
func (s *Server) reap() {
	s.logf.Close()
	// weed puts the gRPC Unix sockets in /tmp under fixed names; remove
	// them so a killed server leaves nothing behind.
	for i, name := range []string{"master", "volume", "filer", "s3"} {
		os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", name, s.ports[2*i+1]))
	}
	os.Remove(socketPath("filer", s.ports[4]))
	os.Remove(socketPath("s3", s.ports[6]))
	s.cmd, s.done, s.logf = nil, nil, nil
}

// waitReady polls until the S3 API answers an authenticated ListBuckets and
// a write to a probe bucket succeeds, the process exits, or readyTimeout
// passes. s.mu is held.
func (s *Server) waitReady(done <-chan struct{}) error {
	c, err := s.NewClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	// One context for all attempts: a probe request that the server holds
	// (e.g. a PUT waiting for the filer's lock ring) is waited for rather
	// than abandoned and repeated, which would leave it running inside weed.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var lastErr error
	for {
		err := probe(ctx, c)
		if err == nil {
			return nil
		}
		if lastErr == nil || ctx.Err() == nil {
			lastErr = err // keep the error from before the deadline
		}
		select {
		case <-done:
			return fmt.Errorf("weed exited early (%v)", s.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("S3 API at %s not ready after %v: %v", s.Endpoint, readyTimeout, lastErr)
		}
	}
}

// probe checks that the server lists buckets and stores an object, then
// removes what it wrote.
func probe(ctx context.Context, c *minio.Client) error {
	if _, err := c.ListBuckets(ctx); err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	if err := c.MakeBucket(ctx, probeBucket, minio.MakeBucketOptions{}); err != nil {
		if resp := minio.ToErrorResponse(err); resp.Code != "BucketAlreadyOwnedByYou" && resp.Code != "BucketAlreadyExists" {
			return fmt.Errorf("make bucket: %w", err)
		}
	}
	body := []byte("ready")
	if _, err := c.PutObject(ctx, probeBucket, "probe", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	if err := c.RemoveObject(ctx, probeBucket, "probe", minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("remove object: %w", err)
	}
	if err := c.RemoveBucket(ctx, probeBucket); err != nil {
		return fmt.Errorf("remove bucket: %w", err)
	}
	return nil
}

// logTail returns the last lines of weed's log.
func (s *Server) logTail() string {
	const max = 8 << 10
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(no weed log: %v)", err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("---- tail of %s ----\n%s", s.LogPath, b)
}

func isPortClash(log string) bool {
	return strings.Contains(log, "address already in use")
}

// socketPath is where weed's local Unix socket for service name on port
// goes. It is short on purpose: Unix socket paths are limited to 107 bytes,
// and tb.TempDir() paths can be longer.
func socketPath(name string, port int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("s3test-%s-%d.sock", name, port))
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

var weed struct {
	sync.Mutex
	path string
}

// weedBinary returns the path of the weed binary: $ACTIVITYSTORE_WEED, or
// what scripts/seaweedfs.sh prints (building it on first use), and how long
// this call took to get it from the script (zero once it is known).
func weedBinary() (string, time.Duration, error) {
	if p := os.Getenv(EnvWeed); p != "" {
		return p, 0, nil
	}
	weed.Lock()
	defer weed.Unlock()
	if weed.path != "" {
		return weed.path, 0, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", 0, err
	}
	script := filepath.Join(root, "scripts", "seaweedfs.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("%s: %v\n%s", script, err, tail(stderr.String(), 4<<10))
	}
	lines := strings.Fields(strings.TrimSpace(stdout.String()))
	if len(lines) == 0 {
		return "", 0, fmt.Errorf("%s printed no path\n%s", script, tail(stderr.String(), 4<<10))
	}
	p := lines[len(lines)-1]
	if _, err := os.Stat(p); err != nil {
		return "", 0, fmt.Errorf("%s: %v", script, err)
	}
	weed.path = p
	return p, time.Since(start), nil
}

// repoRoot finds the module root: two levels above this file, or else the
// first folder with a go.mod above the working directory.
func repoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, "scripts", "seaweedfs.sh")); err == nil {
			return filepath.Clean(root), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Prepare builds the weed binary if it is not built yet (about 12 minutes
// on 2 cores the first time; then it is cached). A TestMain calls it before
// m.Run, so that the build does not count against the tests' timeout. It
// says so on standard error when it builds.
func Prepare() error {
	if os.Getenv(EnvWeed) == "" {
		if root, err := repoRoot(); err == nil {
			check := exec.Command("bash", filepath.Join(root, "scripts", "seaweedfs.sh"), "--check")
			if check.Run() != nil {
				fmt.Fprintln(os.Stderr, "s3test: building SeaweedFS for the S3 tests, once (about 12 minutes on 2 cores)")
			}
		}
	}
	_, _, err := weedBinary()
	return err
}
