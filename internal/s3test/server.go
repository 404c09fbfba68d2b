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
	"time"

	"github.com/minio/minio-go/v7"
)

// Launch starts an S3 server outside a test (a benchmark, say) with its
// data under dir, which must exist, and creates Bucket in it.
// MEGHA_S3_SERVER chooses the server as for Start: "minio" (the default)
// or "versitygw"; a missing binary is an error saying how to install it.
// ctx bounds the start only. stop kills the server and whatever it
// started, and waits for it to exit; it does not remove dir. The caller
// must call stop, on every path, once Launch has succeeded.
func Launch(ctx context.Context, dir string) (s *Server, stop func() error, err error) {
	kind := os.Getenv("MEGHA_S3_SERVER")
	if kind == "" {
		kind = "minio"
	}
	var bin string
	switch kind {
	case "minio":
		bin, err = binary("MEGHA_MINIO", "minio-"+MinIOVersion, "minio", "run `make minio`")
	case "versitygw":
		bin, err = binary("MEGHA_VERSITYGW", "versitygw-"+VersityGWVersion, "versitygw",
			"run `GOBIN=<that directory> CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@"+VersityGWVersion+"`")
	default:
		err = fmt.Errorf("s3test: MEGHA_S3_SERVER=%q: want minio or versitygw", kind)
	}
	if err != nil {
		return nil, nil, err
	}
	s = &Server{AccessKey: "megha" + random(8), SecretKey: random(20), Bucket: Bucket, Kind: kind}

	// The OS picks free ports; between closing them and the server
	// binding them another process may take one, so retry.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, nil, err
		}
		s.Endpoint = ports[0]
		var args, env []string
		switch kind {
		case "minio":
			args = []string{"server", filepath.Join(dir, "minio"), "--address", ports[0], "--console-address", ports[1],
				"--certs-dir", filepath.Join(dir, "certs"), "--quiet"}
			env = []string{"MINIO_ROOT_USER=" + s.AccessKey, "MINIO_ROOT_PASSWORD=" + s.SecretKey, "MINIO_UPDATE=off"}
		case "versitygw":
			posix := filepath.Join(dir, "posix")
			if err := os.MkdirAll(posix, 0o755); err != nil {
				return nil, nil, fmt.Errorf("s3test: %w", err)
			}
			args = []string{"--port", ports[0], "--quiet", "posix", posix}
			env = []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey}
		}
		stop, err := s.run(ctx, bin, args, env, filepath.Join(dir, fmt.Sprintf("server-%d.log", attempt)))
		if err == nil {
			if err := s.makeBucket(ctx); err != nil {
				stop()
				return nil, nil, err
			}
			return s, stop, nil
		}
		if !errors.Is(err, errBind) {
			return nil, nil, fmt.Errorf("s3test: %w", err)
		}
		lastErr = err
	}
	return nil, nil, fmt.Errorf("s3test: %w (5 attempts)", lastErr)
}

// errBind marks a server that exited because its port was taken.
var errBind = errors.New("port taken")

// run starts the server and waits until it answers; stop kills it.
func (s *Server) run(ctx context.Context, bin string, args, env []string, logPath string) (stop func() error, err error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that stop kills whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if errors.Is(err, syscall.ESRCH) {
			err = nil // already gone
		}
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	err = s.waitReady(ctx, exited)
	if err == nil {
		s.Pid = cmd.Process.Pid
		return stop, nil
	}
	stop()
	out, _ := os.ReadFile(logPath)
	if bytes.Contains(out, []byte("address already in use")) || bytes.Contains(out, []byte("bind:")) {
		return nil, fmt.Errorf("%s: %w: %s", s.Kind, errBind, tail(out))
	}
	return nil, fmt.Errorf("%s server at %s: %w; its output:\n%s", s.Kind, s.Endpoint, err, tail(out))
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
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready after %v", startTimeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// makeBucket creates the bucket through the S3 API.
func (s *Server) makeBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: s.Creds(), Secure: false})
	if err != nil {
		return fmt.Errorf("s3test: client: %w", err)
	}
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("s3test: creating bucket %s on %s: %w", s.Bucket, s.Endpoint, err)
	}
	return nil
}

// binary returns the path of a server binary: $envVar, else
// $XDG_CACHE_HOME (or ~/.cache)/megha/tools/DIR/NAME, or an error saying
// how to install it if it is not there.
func binary(envVar, dir, name, install string) (string, error) {
	path := os.Getenv(envVar)
	if path == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("s3test: no %s and no home directory to find %s in: %v", envVar, name, err)
			}
			cache = filepath.Join(home, ".cache")
		}
		path = filepath.Join(cache, "megha", "tools", dir, name)
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("s3test: %s server binary not found at %s: %s (or set %s to its path)", name, path, install, envVar)
	}
	return path, nil
}

// freePorts returns n loopback addresses with ports the OS chose.
func freePorts(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("s3test: finding a free port: %w", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
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

// random returns n random bytes in hex (crypto/rand.Read does not fail).
func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
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
