//go:build unix

package collective

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// memberEnv makes the test binary a ring member process (TestMain).
const memberEnv = "COLLECTIVE_TEST_MEMBER"

func TestMain(m *testing.M) {
	if os.Getenv(memberEnv) != "" {
		if err := runMember(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "member:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMember is one ring member in its own process. Protocol, one line
// each:
//
//	member → test   addr ADDR
//	test → member   ring RANK WORLD ROUND TIMEOUT VICTIM ADDRS
//	member → test   progress           (victim: about to send step 1, chunk 0; it waits for "continue")
//	test → member   continue
//	member → test   result OK|ERROR    (when AllReduce returns)
func runMember(stdin io.Reader, stdout io.Writer) error {
	node, err := Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer node.Close()
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", args...)
	}
	say("addr %s", node.Addr())

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	f := strings.Fields(<-lines)
	if len(f) != 7 || f[0] != "ring" {
		return fmt.Errorf("bad ring line %q", f)
	}
	var v [5]int
	for i := range v {
		if v[i], err = strconv.Atoi(f[1+i]); err != nil {
			return err
		}
	}
	cfg := Config{Rank: v[0], World: v[1], Round: uint64(v[2]), Timeout: time.Duration(v[3]) * time.Millisecond,
		Addrs: strings.Split(f[6], ","), ChunkBytes: 1024}
	if v[4] == 1 {
		gate := make(chan struct{})
		go func() {
			for l := range lines {
				if l == "continue" {
					close(gate)
					return
				}
			}
		}()
		var once sync.Once
		node.testHookSend = func(rank int, c *chunk) {
			if c.step == 1 && c.index == 0 {
				once.Do(func() {
					say("progress")
					<-gate
				})
			}
		}
	}
	bufs, ws := inputs(uint64(cfg.Round), cfg.World, 1<<16)
	_, err = node.AllReduce(context.Background(), cfg, bufs[cfg.Rank], ws[cfg.Rank])
	if err != nil {
		say("result %s", strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		say("result OK")
	}
	return nil
}

// member is a member process seen from the test.
type member struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan line
}

// line is one line of a member's output and when the test read it.
type line struct {
	text string
	at   time.Time
}

func startMember(t *testing.T) *member {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), memberEnv+"=1")
	cmd.Stderr = os.Stderr
	m := &member{cmd: cmd, lines: make(chan line, 8)}
	if m.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(m.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			m.lines <- line{sc.Text(), time.Now()}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return m
}

// expect waits until deadline for the member's next line, which must
// start with word, and returns the rest and when it arrived.
func (m *member) expect(t *testing.T, word string, deadline time.Time) (string, time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case l, ok := <-m.lines:
		if !ok {
			t.Fatalf("member %d exited waiting for %q", m.cmd.Process.Pid, word)
		}
		rest, found := strings.CutPrefix(l.text, word+" ")
		if !found && l.text != word {
			t.Fatalf("member %d: got %q, want %s", m.cmd.Process.Pid, l.text, word)
		}
		return rest, l.at
	case <-timer.C:
		t.Fatalf("member %d: no %q by the deadline", m.cmd.Process.Pid, word)
	}
	return "", time.Time{}
}

func (m *member) send(t *testing.T, format string, args ...any) {
	t.Helper()
	if _, err := fmt.Fprintf(m.stdin, format+"\n", args...); err != nil {
		t.Fatal(err)
	}
}

// TestMemberProcessKilled: a member SIGKILLed mid-ring makes every other
// member abort within the timeout, with an error naming the round and a
// peer.
func TestMemberProcessKilled(t *testing.T) { testMemberProcessFails(t, syscall.SIGKILL) }

// TestMemberProcessStopped: the same for a member frozen by SIGSTOP, whose
// connections stay open and silent.
func TestMemberProcessStopped(t *testing.T) { testMemberProcessFails(t, syscall.SIGSTOP) }

func testMemberProcessFails(t *testing.T, sig syscall.Signal) {
	const (
		n, victim = 4, 2
		round     = 7
		timeout   = 2 * time.Second
		slack     = time.Second // as the in-process tests allow
	)
	t.Parallel()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = startMember(t)
	}
	setup := time.Now().Add(30 * time.Second)
	addrs := make([]string, n)
	for i, m := range ms {
		addrs[i], _ = m.expect(t, "addr", setup)
	}
	for i, m := range ms {
		m.send(t, "ring %d %d %d %d %d %s", i, n, round, timeout.Milliseconds(), boolInt(i == victim), strings.Join(addrs, ","))
	}
	// The victim has sent all of step 0 and holds step 1 back until the
	// signal has landed, so the signal always comes mid-ring.
	ms[victim].expect(t, "progress", setup)
	if err := ms[victim].cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	if sig == syscall.SIGSTOP {
		ms[victim].send(t, "continue") // read only once it is continued
	}

	want := regexp.MustCompile(fmt.Sprintf(`^collective: round %d: rank \d \((127\.0\.0\.1:\d+)\) `, round))
	namesVictim := false
	for i, m := range ms {
		if i == victim {
			continue
		}
		res, at := m.expect(t, "result", signalled.Add(timeout+slack))
		took := at.Sub(signalled)
		t.Logf("rank %d after %v: %s", i, took.Round(time.Millisecond), res)
		if res == "OK" {
			t.Fatalf("rank %d succeeded without rank %d", i, victim)
		}
		sm := want.FindStringSubmatch(res)
		if sm == nil {
			t.Errorf("rank %d: error does not name the round and a peer: %s", i, res)
		} else if sm[1] == addrs[victim] {
			namesVictim = true
		}
	}
	if !namesVictim {
		t.Errorf("no error names rank %d (%s)", victim, addrs[victim])
	}
	if sig == syscall.SIGSTOP {
		if err := ms[victim].cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		// Continued, it finds its round aborted too.
		res, _ := ms[victim].expect(t, "result", time.Now().Add(timeout+slack))
		t.Logf("rank %d after SIGCONT: %s", victim, res)
		if res == "OK" {
			t.Errorf("rank %d succeeded after the others aborted", victim)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
