package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"512MiB": 512 << 20, "1GiB": 1 << 30, "64MB": 64e6, "4096": 4096, "1.5KiB": 1536,
		"2G": 2 << 30, "10 MiB": 10 << 20, "1TiB": 1 << 40, "3B": 3,
	} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1MiB", "MiB", "1XB", "lots", "1e30GiB", "0.1B", "NaN", "Inf"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
	require.Equal(t, "64MiB", fmtSize(64<<20))
	require.Equal(t, "1000B", fmtSize(1000))
	require.Equal(t, "7d", fmtDuration(7*24*time.Hour))
	require.Equal(t, "1h", fmtDuration(time.Hour))
	require.Equal(t, "90m", fmtDuration(90*time.Minute))
	require.Equal(t, "0", fmtDuration(0))
}

// TestServeHelp checks that serve --help shows every flag with its
// environment variable.
func TestServeHelp(t *testing.T) {
	out := mustRun(t, "serve", "--help").stdout
	for _, f := range []string{"addr", "tokens", "retain", "cold-after", "compact-every", "archive-dir", "segment-width",
		"cache", "block-cache", "memtable", "no-sync", "tail-backlog", "max-body", "max-posts", "max-reads",
		"max-streams", "log-format", "tls-cert", "tls-key"} {
		require.Contains(t, out, "--"+f+" ", f)
		require.Contains(t, out, "[$"+envName(f)+"]", f)
	}
	require.Contains(t, out, "(default 7d)")
	require.Contains(t, out, "(default 64MiB)")
}

// TestServeBadValues checks that a bad flag or environment value is one
// line that names the flag, and creates no store.
func TestServeBadValues(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	for _, tc := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{args: []string{"--cold-after", "abc"}, want: "--cold-after"},
		{args: []string{"--cold-after", "0"}, want: "--cold-after"},
		{args: []string{"--cache", "lots"}, want: "--cache"},
		{args: []string{"--memtable", "-1MiB"}, want: "--memtable"},
		{args: []string{"--log-format", "xml"}, want: "--log-format"},
		{args: []string{"--tls-cert", "c.pem"}, want: "--tls-key"},
		{args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, want: "--tls-cert"},
		{args: []string{"--max-reads", "0"}, want: "--max-reads"},
		{args: []string{"--retain", "1d"}, want: "--retain"},
		{env: [2]string{"ACTIVITYSTORE_CACHE", "lots"}, want: "ACTIVITYSTORE_CACHE=\"lots\" (--cache)"},
		{env: [2]string{"ACTIVITYSTORE_COMPACT_EVERY", "soon"}, want: "--compact-every"},
	} {
		t.Run(strings.Join(append(tc.args, tc.env[0]), " "), func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			args := append([]string{"serve", "--dir", dir, "--addr", "127.0.0.1:0"}, tc.args...)
			r := runCmd(t, "", args...)
			requireOneLineError(t, r, args...)
			require.Contains(t, r.stderr, tc.want)
			_, err := os.Stat(dir)
			require.ErrorIs(t, err, os.ErrNotExist, "no store created")
		})
	}
}

// startServeBinary starts the built binary's serve with args and env and
// returns its base URL, its standard error lines and its process ID; it is
// killed at the end of the test.
func startServeBinary(t *testing.T, bin string, env []string, args ...string) (string, *lineCollector, int) {
	t.Helper()
	srv := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	srv.Env = append(os.Environ(), env...)
	stderrPipe, err := srv.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	stderr := collectLines(stderrPipe)
	t.Cleanup(func() {
		srv.Process.Kill()
		<-stderr.done
		srv.Wait()
	})
	deadline := time.After(30 * time.Second)
	for {
		line := stderr.next(t, deadline)
		if u, ok := strings.CutPrefix(line, "listening on "); ok {
			return u, stderr, srv.Process.Pid
		}
	}
}

// TestServeCompactsAndRetains starts serve configured by flags and the
// environment to archive windows an hour after they end, delete what is
// older than two days and do both every 100ms, with a JSON log: the log
// shows the runs, and the old activity is gone while the others stay.
func TestServeCompactsAndRetains(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "store")
	base, stderr, _ := startServeBinary(t, bin,
		[]string{"ACTIVITYSTORE_LOG_FORMAT=json", "ACTIVITYSTORE_RETAIN=2d", "ACTIVITYSTORE_DIR=" + dir},
		"--segment-width", "1h", "--cold-after", "1h", "--compact-every", "100ms", "--cache", "8MiB")
	waitHealthy(t, base)
	now := time.Now().UTC()
	var body strings.Builder
	for _, ago := range []time.Duration{72 * time.Hour, 30 * time.Hour, 0} {
		fmt.Fprintf(&body, `{"type":"t","time":%q}`+"\n", now.Add(-ago).Format(time.RFC3339Nano))
	}
	resp, err := http.Post(base+"/v1/activities", "application/x-ndjson", strings.NewReader(body.String()))
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300)

	// The JSON log shows a run that archived the 30-hour-old window and
	// dropped the 72-hour-old one.
	deadline := time.After(30 * time.Second)
	for {
		line := stderr.next(t, deadline)
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "compaction" {
			continue
		}
		require.Equal(t, "INFO", rec["level"], line)
		if rec["archives"] == float64(1) && rec["activities"] == float64(2) {
			break
		}
	}
	resp, err = http.Get(base + "/v1/count")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.JSONEq(t, `{"count":2}`, string(b))
	_, err = os.Stat(filepath.Join(dir, "archive"))
	require.NoError(t, err, "the store is in ACTIVITYSTORE_DIR")
}

// TestServeTLS starts serve with a certificate and reads /healthz over
// HTTPS.
func TestServeTLS(t *testing.T) {
	bin := buildBinary(t)
	certFile, keyFile, pool := selfSigned(t)
	base, _, _ := startServeBinary(t, bin, nil, "--dir", filepath.Join(t.TempDir(), "store"), "--tls-cert", certFile, "--tls-key", keyFile)
	require.True(t, strings.HasPrefix(base, "https://"), base)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.NotNil(t, resp.TLS)
			break
		}
		require.True(t, time.Now().Before(deadline), "%v", err)
		time.Sleep(20 * time.Millisecond)
	}
	// Plain HTTP on the same port is refused.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "https://"))
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	require.Contains(t, line, "400")
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// files and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "activitystore test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
