package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// newLogs returns a task directory with a logs directory and a writer for
// its stdout.
func newLogs(t *testing.T, cfg LogConfig) (taskDir string, w *rotatingWriter) {
	t.Helper()
	taskDir = t.TempDir()
	if err := os.Mkdir(logDir(taskDir), 0o750); err != nil {
		t.Fatal(err)
	}
	w, err := openRotatingWriter(logDir(taskDir), Stdout, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return taskDir, w
}

func writeLines(t *testing.T, w io.Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := fmt.Fprintf(w, "line %03d\n", i); err != nil {
			t.Fatal(err)
		}
	}
}

// assertRotated checks that stream kept at most MaxFiles files of at most
// MaxBytes each, and that it did rotate.
func assertRotated(t *testing.T, dir, stream string, cfg LogConfig) {
	t.Helper()
	seqs, err := listSeqs(dir, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) == 0 || len(seqs) > cfg.MaxFiles-1 {
		t.Errorf("%d rotated files (%v), want 1..%d", len(seqs), seqs, cfg.MaxFiles-1)
	}
	paths := []string{livePath(dir, stream)}
	for _, s := range seqs {
		paths = append(paths, seqPath(dir, stream, s))
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > cfg.MaxBytes {
			t.Errorf("%s is %d bytes, over the limit of %d", filepath.Base(p), fi.Size(), cfg.MaxBytes)
		}
	}
}

// assertConsecutive checks that lines are "<prefix>N" for consecutive N.
func assertConsecutive(t *testing.T, lines []string, prefix string) {
	t.Helper()
	prev := -1
	for i, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, prefix))
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("line %d is %q, want %q followed by a number", i, l, prefix)
		}
		if prev >= 0 && n != prev+1 {
			t.Fatalf("line %d is %q after %d: lines lost or out of order", i, l, prev)
		}
		prev = n
	}
}

func TestLogRotationReadsInOrder(t *testing.T) {
	// 9-byte lines and 100-byte files: most lines at a file boundary are
	// split across two files.
	cfg := LogConfig{MaxBytes: 100, MaxFiles: 3}
	taskDir, w := newLogs(t, cfg)
	writeLines(t, w, 0, 100)
	assertRotated(t, logDir(taskDir), Stdout, cfg)

	lines := readLines(t, taskDir, Stdout)
	if lines[len(lines)-1] != "line 099" {
		t.Errorf("last line %q, want line 099", lines[len(lines)-1])
	}
	// Three files of at most 100 bytes keep at least 22 whole lines.
	if len(lines) < 22 {
		t.Errorf("read %d lines, want at least 22", len(lines))
	}
	assertConsecutive(t, lines[1:], "line ")

	// A restarted writer appends and keeps numbering after the last file.
	w.Close()
	w2, err := openRotatingWriter(logDir(taskDir), Stdout, cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w2, 100, 130)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	lines = readLines(t, taskDir, Stdout)
	if lines[len(lines)-1] != "line 129" {
		t.Errorf("last line %q, want line 129", lines[len(lines)-1])
	}
	assertConsecutive(t, lines[1:], "line ")
}

func TestLogFollow(t *testing.T) {
	cfg := LogConfig{MaxBytes: 100, MaxFiles: 100} // keeps every line written here
	taskDir, w := newLogs(t, cfg)
	writeLines(t, w, 0, 5)

	r, err := OpenLogs(taskDir, Stdout, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	next := 0
	expect := func(upTo int) {
		t.Helper()
		for ; next < upTo; next++ {
			line, err := r.ReadLine(ctx)
			if err != nil {
				t.Fatalf("ReadLine for line %d: %v", next, err)
			}
			if want := fmt.Sprintf("line %03d", next); line != want {
				t.Fatalf("ReadLine = %q, want %q", line, want)
			}
		}
	}
	expect(5)

	// Lines written after the reader started, with several rotations
	// between two reads.
	writeLines(t, w, 5, 50)
	expect(50)

	// A partial line waits for its newline.
	fmt.Fprint(w, "line 0")
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if line, err := r.ReadLine(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadLine of a partial line = %q, %v; want to wait", line, err)
	}
	fmt.Fprint(w, "50\n")
	expect(51)

	// A writer running while the reader follows.
	go func() {
		for i := 51; i < 300; i++ {
			fmt.Fprintf(w, "line %03d\n", i)
		}
	}()
	expect(300)
}

// A follower that falls behind by more than the files kept goes on with
// the oldest file left, without repeating or reordering lines.
func TestLogFollowFallsBehind(t *testing.T) {
	taskDir, w := newLogs(t, LogConfig{MaxBytes: 100, MaxFiles: 3})
	writeLines(t, w, 0, 5)
	r, err := OpenLogs(taskDir, Stdout, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if line, err := r.ReadLine(ctx); err != nil || line != "line 000" {
		t.Fatalf("ReadLine = %q, %v", line, err)
	}
	writeLines(t, w, 5, 100)
	lines := []string{"line 000"}
	for {
		line, err := r.ReadLine(ctx)
		if err != nil {
			t.Fatalf("ReadLine after %q: %v", lines[len(lines)-1], err)
		}
		lines = append(lines, line)
		if line == "line 099" {
			break
		}
	}
	// What the reader had open (lines 0-10) it finishes; then a gap; the
	// line at the gap may be cut; then consecutive lines to the end.
	assertConsecutive(t, lines[:11], "line ")
	if len(lines) >= 100 {
		t.Fatalf("read %d lines, want some lost to rotation", len(lines))
	}
	assertConsecutive(t, lines[12:], "line ")
}

func TestLogTail(t *testing.T) {
	taskDir, w := newLogs(t, LogConfig{MaxBytes: 100, MaxFiles: 10})
	writeLines(t, w, 0, 40)

	tail := func(n int, follow bool) *LogReader {
		t.Helper()
		r, err := OpenLogs(taskDir, Stdout, follow)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if err := r.Tail(n); err != nil {
			t.Fatalf("Tail(%d): %v", n, err)
		}
		return r
	}
	readAll := func(r *LogReader) []string {
		var lines []string
		for {
			line, err := r.ReadLine(context.Background())
			if err == io.EOF {
				return lines
			}
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
	}

	for _, n := range []int{0, 1, 5, 12, 39} {
		got := readAll(tail(n, false))
		if len(got) != n {
			t.Fatalf("Tail(%d) read %d lines: %q", n, len(got), got)
		}
		for i, line := range got {
			if want := fmt.Sprintf("line %03d", 40-n+i); line != want {
				t.Fatalf("Tail(%d) line %d = %q, want %q", n, i, line, want)
			}
		}
	}
	if got := readAll(tail(1000, false)); len(got) != 40 || got[0] != "line 000" {
		t.Errorf("Tail(1000) read %d lines from %q, want all 40", len(got), got[:1])
	}

	// Tail, then follow.
	r := tail(2, true)
	writeLines(t, w, 40, 42)
	fmt.Fprint(w, "no newline yet")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for _, want := range []string{"line 038", "line 039", "line 040", "line 041"} {
		if line, err := r.ReadLine(ctx); err != nil || line != want {
			t.Fatalf("ReadLine = %q, %v; want %q", line, err, want)
		}
	}
	// Without following, a last line with no newline still counts.
	if got := readAll(tail(1, false)); len(got) != 1 || got[0] != "no newline yet" {
		t.Errorf("Tail(1) = %q, want the unterminated last line", got)
	}
}

func TestLogLongLine(t *testing.T) {
	taskDir, w := newLogs(t, LogConfig{})
	long := strings.Repeat("x", maxLineBytes+10)
	fmt.Fprintf(w, "%s\nshort\n", long)
	got := readLines(t, taskDir, Stdout)
	if len(got) != 3 || len(got[0]) != maxLineBytes || got[1] != "xxxxxxxxxx" || got[2] != "short" {
		t.Errorf("got %d lines of lengths %d…, want a split long line then short", len(got), len(got[0]))
	}
}

func TestOpenLogsErrors(t *testing.T) {
	if _, err := OpenLogs(t.TempDir(), "stdin", false); err == nil || !strings.Contains(err.Error(), `unknown log stream "stdin"`) {
		t.Errorf("OpenLogs(stdin) = %v", err)
	}
	if _, err := OpenLogs(filepath.Join(t.TempDir(), "nope"), Stdout, false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenLogs(missing dir) = %v, want ErrNotExist", err)
	}
	// A prepared task with no output yet reads as empty.
	taskDir, _ := newLogs(t, LogConfig{})
	if got := readLines(t, taskDir, Stderr); len(got) != 0 {
		t.Errorf("empty stream read %q", got)
	}
}
