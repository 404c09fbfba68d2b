package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

type exitCodeError int

func (e exitCodeError) Error() string { return fmt.Sprintf("exit %d", int(e)) }
func (e exitCodeError) ExitCode() int { return int(e) }

func TestFuncRuntimeEnds(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		fn     TaskFunc
		code   int
		errIs  error
		errHas string
	}{
		{"success", func(ctx context.Context, t *Task, stdout, stderr io.Writer) error {
			fmt.Fprintf(stdout, "hello from rank %d of %d\n", t.Rank, t.World)
			fmt.Fprintln(stderr, "err")
			return nil
		}, 0, nil, ""},
		{"error", func(context.Context, *Task, io.Writer, io.Writer) error {
			return boom
		}, 1, boom, ""},
		{"exit code", func(context.Context, *Task, io.Writer, io.Writer) error {
			return fmt.Errorf("training diverged: %w", exitCodeError(3))
		}, 3, exitCodeError(3), ""},
		{"panic", func(context.Context, *Task, io.Writer, io.Writer) error {
			panic("nil tensor")
		}, 2, nil, "panicked: nil tensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := NewFuncRuntime("trainer", tt.fn, LogConfig{})
			if rt.Name() != "trainer" {
				t.Errorf("Name() = %q", rt.Name())
			}
			task := testTask(t)
			h := startTask(t, rt, task)
			if h.PID() != 0 {
				t.Errorf("PID() = %d, want 0", h.PID())
			}
			res := waitResult(t, h)
			if res.ExitCode != tt.code || res.Signal != "" || res.Stopped {
				t.Errorf("result = %+v, want exit code %d", res, tt.code)
			}
			if tt.errIs != nil && !errors.Is(res.Err, tt.errIs) {
				t.Errorf("Err = %v, want %v", res.Err, tt.errIs)
			}
			if tt.errHas != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.errHas)) {
				t.Errorf("Err = %v, want it to mention %q", res.Err, tt.errHas)
			}
			if tt.code == 0 {
				if !res.Success() {
					t.Errorf("result = %+v, want success", res)
				}
				if got := readLines(t, task.Dir, Stdout); len(got) != 1 || got[0] != "hello from rank 1 of 4" {
					t.Errorf("stdout = %q", got)
				}
				if got := readLines(t, task.Dir, Stderr); len(got) != 1 || got[0] != "err" {
					t.Errorf("stderr = %q", got)
				}
			}
		})
	}
}

func TestFuncRuntimeStop(t *testing.T) {
	t.Run("returns on cancel", func(t *testing.T) {
		started := make(chan struct{})
		rt := NewFuncRuntime("f", func(ctx context.Context, _ *Task, _, _ io.Writer) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}, LogConfig{})
		h := startTask(t, rt, testTask(t))
		<-started

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with a cancelled context = %v, want context.Canceled", err)
		}
		if err := h.Stop(deadline); err != nil {
			t.Fatal(err)
		}
		res := waitResult(t, h)
		if res.Signal != "SIGTERM" || !res.Stopped || res.ExitCode != -1 || res.Err != nil {
			t.Errorf("result = %+v, want stopped by SIGTERM", res)
		}
	})

	t.Run("ignores cancel", func(t *testing.T) {
		release := make(chan struct{})
		returned := make(chan struct{})
		rt := NewFuncRuntime("f", func(ctx context.Context, _ *Task, stdout, _ io.Writer) error {
			defer close(returned)
			<-release
			fmt.Fprintln(stdout, "too late")
			return nil
		}, LogConfig{})
		task := testTask(t)
		h := startTask(t, rt, task)
		stopAt := time.Now()
		if err := h.Stop(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		res := waitResult(t, h)
		if res.Signal != "SIGKILL" || !res.Stopped || res.Err == nil {
			t.Errorf("result = %+v, want killed with an error", res)
		}
		if took := res.FinishedAt.Sub(stopAt); took < 50*time.Millisecond {
			t.Errorf("abandoned %v after Stop, before the grace period", took)
		}
		// The abandoned function's later output and result are dropped.
		close(release)
		<-returned
		if again := waitResult(t, h); again.Signal != "SIGKILL" {
			t.Errorf("result changed after the function returned: %+v", again)
		}
		if got := readLines(t, task.Dir, Stdout); len(got) != 0 {
			t.Errorf("stdout = %q, want nothing after the task ended", got)
		}
	})

	t.Run("ends before stop", func(t *testing.T) {
		rt := NewFuncRuntime("f", func(context.Context, *Task, io.Writer, io.Writer) error {
			return nil
		}, LogConfig{})
		h := startTask(t, rt, testTask(t))
		res := waitResult(t, h)
		if err := h.Stop(time.Second); err != nil {
			t.Fatal(err)
		}
		if again := waitResult(t, h); !res.Success() || again != res {
			t.Errorf("results %+v then %+v, want the same success", res, again)
		}
	})
}

func TestFuncRuntimeStartErrors(t *testing.T) {
	ctx := context.Background()
	task := testTask(t)
	rt := NewFuncRuntime("f", nil, LogConfig{})
	if err := rt.Prepare(ctx, task); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(ctx, task); err == nil || !strings.HasPrefix(err.Error(), "runtime: start task t1:") {
		t.Errorf("Start without a function = %v", err)
	}
	task.World = 0
	if _, err := rt.Start(ctx, task); err == nil || !strings.Contains(err.Error(), "world size 0") {
		t.Errorf("Start with world 0 = %v", err)
	}
}
