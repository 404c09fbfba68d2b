// Package s3test runs a real S3 server for one test: MinIO by default, or
// Versity's S3 gateway with MEGHA_S3_SERVER=versitygw. Tests talk to it
// through the S3 API only, so any S3 server would do.
//
// The server binaries are not downloaded here: `make minio` builds MinIO
// into the cache directory this package looks in (MEGHA_MINIO overrides
// the path). A missing binary fails the test, it does not skip it.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Versions of the servers, as installed into the cache directory.
const (
	// MinIOVersion is the module version of github.com/minio/minio that
	// `make minio` installs.
	MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"
	// VersityGWVersion is the version of github.com/versity/versitygw
	// used with MEGHA_S3_SERVER=versitygw.
	VersityGWVersion = "v1.8.0"
)

// Bucket is the bucket Start creates.
const Bucket = "megha-test"

// startTimeout bounds how long a server may take to answer.
const startTimeout = 60 * time.Second

// Server is an S3 server running for one test, with one empty bucket.
type Server struct {
	// Endpoint is host:port, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the server's root credentials, random
	// for each server.
	AccessKey, SecretKey string
	// Bucket is the bucket created for the test.
	Bucket string
	// Kind is "minio" or "versitygw".
	Kind string
}

// URL returns the checkpoint store URL of prefix in the test bucket,
// s3://BUCKET/PREFIX?endpoint=HOST:PORT&secure=false.
func (s *Server) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&secure=false", s.Bucket, prefix, s.Endpoint)
}

// Creds returns the server's root credentials.
func (s *Server) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")
}

// SetEnv puts the server's credentials into AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY for the rest of the test (see testing.T.Setenv),
// for code that reads credentials from the environment.
func (s *Server) SetEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
}

// Start starts an S3 server with a fresh data directory and a bucket, and
// stops it when the test ends. MEGHA_S3_SERVER chooses the server: "minio"
// (the default) or "versitygw".
func Start(t testing.TB) *Server {
	t.Helper()
	kind := os.Getenv("MEGHA_S3_SERVER")
	if kind == "" {
		kind = "minio"
	}
	var bin string
	switch kind {
	case "minio":
		bin = binary(t, "MEGHA_MINIO", "minio-"+MinIOVersion, "minio", "run `make minio`")
	case "versitygw":
		bin = binary(t, "MEGHA_VERSITYGW", "versitygw-"+VersityGWVersion, "versitygw",
			"run `GOBIN=<that directory> CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@"+VersityGWVersion+"`")
	default:
		t.Fatalf("s3test: MEGHA_S3_SERVER=%q: want minio or versitygw", kind)
	}
	s := &Server{AccessKey: "megha" + random(t, 8), SecretKey: random(t, 20), Bucket: Bucket, Kind: kind}
	data := t.TempDir()

	// The OS picks free ports; between closing them and the server
	// binding them another process may take one, so retry.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports := freePorts(t, 2)
		s.Endpoint = ports[0]
		var args, env []string
		switch kind {
		case "minio":
			args = []string{"server", filepath.Join(data, "minio"), "--address", ports[0], "--console-address", ports[1],
				"--certs-dir", filepath.Join(data, "certs"), "--quiet"}
			env = []string{"MINIO_ROOT_USER=" + s.AccessKey, "MINIO_ROOT_PASSWORD=" + s.SecretKey, "MINIO_UPDATE=off"}
		case "versitygw":
			dir := filepath.Join(data, "posix")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			args = []string{"--port", ports[0], "--quiet", "posix", dir}
			env = []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey}
		}
		err := s.run(t, bin, args, env, filepath.Join(data, fmt.Sprintf("server-%d.log", attempt)))
		if err == nil {
			s.makeBucket(t)
			return s
		}
		if !errors.Is(err, errBind) {
			t.Fatalf("s3test: %v", err)
		}
		lastErr = err
	}
	t.Fatalf("s3test: %v (5 attempts)", lastErr)
	return nil
}

// errBind marks a server that exited because its port was taken.
var errBind = errors.New("port taken")

// run starts the server, registers its cleanup and waits until it answers.
func (s *Server) run(t testing.TB, bin string, args, env []string, logPath string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that cleanup kills whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("s3test: starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err = s.waitReady(ctx, exited)
	if err == nil {
		t.Cleanup(stop)
		return nil
	}
	stop()
	out, _ := os.ReadFile(logPath)
	if bytes.Contains(out, []byte("address already in use")) || bytes.Contains(out, []byte("bind:")) {
		return fmt.Errorf("%s: %w: %s", s.Kind, errBind, tail(out))
	}
	return fmt.Errorf("%s server at %s: %w; its output:\n%s", s.Kind, s.Endpoint, err, tail(out))
}

// waitReady polls the server until it answers or ctx ends: MinIO's
// liveness endpoint, or for other servers any HTTP answer at all.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	url := "http://" + s.Endpoint + "/"
	if s.Kind == "minio" {
		url = "http://" + s.Endpoint + "/minio/health/live"
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if s.Kind != "minio" || resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v", startTimeout)
		case <-tick.C:
		}
	}
}

// makeBucket creates the test bucket through the S3 API.
func (s *Server) makeBucket(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: s.Creds(), Secure: false})
	if err != nil {
		t.Fatalf("s3test: client: %v", err)
	}
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: creating bucket %s on %s: %v", s.Bucket, s.Endpoint, err)
	}
}

// binary returns the path of a server binary: $envVar, else
// $XDG_CACHE_HOME (or ~/.cache)/megha/tools/DIR/NAME. It fails the test,
// saying how to install it, if it is not there.
func binary(t testing.TB, envVar, dir, name, install string) string {
	t.Helper()
	path := os.Getenv(envVar)
	if path == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatalf("s3test: no %s and no home directory to find %s in: %v", envVar, name, err)
			}
			cache = filepath.Join(home, ".cache")
		}
		path = filepath.Join(cache, "megha", "tools", dir, name)
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("s3test: %s server binary not found at %s: %s (or set %s to its path)", name, path, install, envVar)
	}
	return path
}

// freePorts returns n loopback addresses with ports the OS chose.
func freePorts(t testing.TB, n int) []string {
	var addrs []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("s3test: finding a free port: %v", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

// cleanEnv is the environment without credentials or server settings a
// developer may have exported, which would change how the server starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MINIO_") || strings.HasPrefix(kv, "AWS_") ||
			strings.HasPrefix(kv, "ROOT_") || strings.HasPrefix(kv, "VGW_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func random(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tail returns the last lines of a server's output.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
