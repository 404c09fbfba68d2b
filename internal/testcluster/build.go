//go:build unix

package testcluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

var (
	buildMu   sync.Mutex
	buildDone = map[string]string{} // dir -> binary, built by this process
)

// Build compiles cmd/megha into dir/megha and returns the binary's path.
// The module root is found with `go env GOMOD`, so Build works from any
// package directory (go test runs in the package's). With dir empty the
// binary goes to a per-user directory under os.TempDir() keyed by the
// module root; `go build` relinks only when the sources changed, so
// repeated test runs pay almost nothing. Each dir is built once per process.
func Build(dir string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()

	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if dir == "" {
		sum := sha256.Sum256([]byte(root))
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("megha-testcluster-%d", os.Getuid()),
			hex.EncodeToString(sum[:6]))
	}
	if bin, ok := buildDone[dir]; ok {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testcluster: build dir: %w", err)
	}
	// Other test processes (go test ./... runs packages in parallel) may
	// build into the same shared dir.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("testcluster: build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("testcluster: build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	bin := filepath.Join(dir, "megha")
	cmd := exec.Command(goTool(), "build", "-o", bin, "./cmd/megha")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testcluster: go build ./cmd/megha in %s: %v\n%s", root, err, out.String())
	}
	buildDone[dir] = bin
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("testcluster: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("testcluster: not inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// goTool is the go command: the one on PATH, else $GOROOT/bin/go.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if gr := os.Getenv("GOROOT"); gr != "" {
		return filepath.Join(gr, "bin", "go")
	}
	return "go"
}
