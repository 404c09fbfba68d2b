package runtime

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Environment variables the worker sets for every task. A job spec may not
// set them itself.
const (
	EnvJobID       = "MEGHA_JOB_ID"
	EnvTaskID      = "MEGHA_TASK_ID"
	EnvRank        = "MEGHA_RANK"
	EnvWorldSize   = "MEGHA_WORLD_SIZE"
	EnvCoordinator = "MEGHA_COORDINATOR"
	EnvSocket      = "MEGHA_WORKER_SOCKET"
	EnvTaskDir     = "MEGHA_TASK_DIR"
)

var reservedEnv = map[string]struct{}{
	EnvJobID: {}, EnvTaskID: {}, EnvRank: {}, EnvWorldSize: {},
	EnvCoordinator: {}, EnvSocket: {}, EnvTaskDir: {},
}

// DefaultInheritEnv lists the worker's environment variables a process
// task inherits; everything else it gets from its job spec. Credentials in
// the worker's environment stay there.
var DefaultInheritEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL",
	"LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
	"LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
}

// defaultPath is PATH for a task when the worker has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// MeghaEnv returns the variables the worker sets for task t: identity,
// rank, coordinator, worker socket and task directory.
func MeghaEnv(t *Task) map[string]string {
	return map[string]string{
		EnvJobID:       t.JobID,
		EnvTaskID:      t.ID,
		EnvRank:        strconv.Itoa(t.Rank),
		EnvWorldSize:   strconv.Itoa(t.World),
		EnvCoordinator: t.CoordinatorAddr,
		EnvSocket:      Socket(t),
		EnvTaskDir:     t.Dir,
	}
}

// taskEnv builds a process task's environment, later layers winning: the
// inherited variables, TMPDIR in the task's scratch directory, the job
// spec's variables, the worker's MEGHA_* variables. It is sorted, so the
// same task always sees the same environment.
func taskEnv(t *Task, inherit []string) []string {
	env := make(map[string]string, len(inherit)+len(t.Env)+8)
	for _, k := range inherit {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if env["PATH"] == "" {
		env["PATH"] = defaultPath
	}
	env["TMPDIR"] = tmpDir(t.Dir)
	for k, v := range t.Env {
		env[k] = v
	}
	for k, v := range MeghaEnv(t) {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// envValue returns the value of key in env, a list of "k=v".
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath resolves argv0 the way a shell would for the task: a name with
// a slash is a path (relative to the task directory), any other name is
// searched in the task's own PATH, not the worker's.
func lookPath(argv0, dir, pathEnv string) (string, error) {
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", err
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			// Relative PATH entries would resolve against the task
			// directory, which is not what whoever wrote them meant.
			continue
		}
		p := filepath.Join(d, argv0)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

var errIsDir = errors.New("is a directory")

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errIsDir
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}
