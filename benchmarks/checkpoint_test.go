//go:build unix

package benchmarks

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/megha-ml/megha/internal/s3test"
)

// serverCPU reads a process's CPU time from /proc; here, this process's,
// which must agree with getrusage.
func TestServerCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	e := &ckS3{srv: &s3test.Server{Pid: os.Getpid()}}
	start := time.Now()
	for time.Since(start) < 50*time.Millisecond { // burn some CPU
	}
	got, want := e.serverCPU(), selfCPUTime()
	if got < 0 || got > want+20*time.Millisecond || got < want-100*time.Millisecond {
		t.Fatalf("serverCPU of this process = %v, getrusage says %v", got, want)
	}
	e.srv.Pid = -1
	if got := e.serverCPU(); got >= 0 {
		t.Fatalf("serverCPU of no process = %v, want negative", got)
	}
}

func TestCkIntervalOverlaps(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	step := ckInterval{at(10), at(20)}
	for _, c := range []struct {
		u    ckInterval
		want bool
	}{
		{ckInterval{at(0), at(10)}, false}, // ends as the step starts
		{ckInterval{at(0), at(11)}, true},
		{ckInterval{at(12), at(15)}, true},
		{ckInterval{at(19), at(30)}, true},
		{ckInterval{at(20), at(30)}, false}, // starts as the step ends
	} {
		if got := step.overlaps(c.u); got != c.want {
			t.Errorf("step 10–20 ms overlaps %v–%v ms = %v, want %v", c.u.start.Sub(t0).Milliseconds(), c.u.end.Sub(t0).Milliseconds(), got, c.want)
		}
	}
}
