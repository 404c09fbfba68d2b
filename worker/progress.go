package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/worker/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// progressEvery bounds how often a task's progress is sent on: a task may
// write as often as it likes, the coordinator sees the latest.
const progressEvery = 500 * time.Millisecond

// progressServer listens on a task's socket (MEGHA_WORKER_SOCKET). A task
// writes one JSON object per line with any of the Progress fields, e.g.
//
//	{"round": 3, "step": 150, "tokens": 614400, "loss": 2.71, "val_loss": 2.80}
//
// and gets back "ok" or "error: ..." per line. The latest progress is
// reported to the coordinator with the task's RUNNING state.
type progressServer struct {
	ln     net.Listener
	mu     sync.Mutex
	latest *meghav1.Progress
	dirty  bool
	wg     sync.WaitGroup
	stop   chan struct{}
}

func (ts *tasks) serveProgress(epoch uint64, t *runtime.Task) (*progressServer, error) {
	ln, err := net.Listen("unix", runtime.Socket(t))
	if err != nil {
		return nil, fmt.Errorf("worker: task %s socket: %w", t.ID, err)
	}
	ps := &progressServer{ln: ln, stop: make(chan struct{})}
	ps.wg.Add(2)
	go func() {
		defer ps.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ps.wg.Add(1)
			go func() { defer ps.wg.Done(); ps.read(c) }()
		}
	}()
	go func() {
		defer ps.wg.Done()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-ps.stop:
				ps.flush(ts, epoch, t)
				return
			case <-tick.C:
				ps.flush(ts, epoch, t)
			}
		}
	}()
	return ps, nil
}

func (ps *progressServer) read(c net.Conn) {
	defer c.Close()
	go func() { <-ps.stop; c.Close() }()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for sc.Scan() {
		p := &meghav1.Progress{}
		if err := protojson.Unmarshal(sc.Bytes(), p); err != nil {
			fmt.Fprintf(c, "error: %v; write one JSON object a line with fields round, step, tokens, loss, val_loss\n", err)
			continue
		}
		ps.mu.Lock()
		ps.latest, ps.dirty = p, true
		ps.mu.Unlock()
		fmt.Fprintln(c, "ok")
	}
}

func (ps *progressServer) flush(ts *tasks, epoch uint64, t *runtime.Task) {
	ps.mu.Lock()
	p, dirty := ps.latest, ps.dirty
	ps.dirty = false
	ps.mu.Unlock()
	if !dirty {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := ts.a.cfg.Client.ReportProgress(ctx, &meghav1.ProgressReport{WorkerId: ts.a.ID(), Epoch: epoch, TaskId: t.ID,
		State: meghav1.TaskState_TASK_STATE_RUNNING, Progress: proto.Clone(p).(*meghav1.Progress)})
	if err != nil && !errors.Is(err, context.Canceled) {
		ts.a.logger.Debug("progress not recorded", "task_id", t.ID, "error", err)
	}
}

// close stops listening, sends the last progress and waits.
func (ps *progressServer) close() {
	ps.ln.Close()
	close(ps.stop)
	ps.wg.Wait()
}
