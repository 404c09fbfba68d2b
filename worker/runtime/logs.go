package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// logPoll is how often a following LogReader looks for new output.
var logPoll = 100 * time.Millisecond

// maxLineBytes is the longest line a LogReader returns; a longer line
// comes back in pieces of this size.
const maxLineBytes = 64 << 10

// LogReader reads one output stream of a task line by line, across its
// rotated files in order (stdout.log.1, stdout.log.2, …, stdout.log). In
// follow mode it keeps reading what the task writes, through rotations,
// like tail -F. A LogReader is not safe for concurrent use.
//
// A reader that falls behind by more than the files kept (LogConfig) loses
// what was deleted and goes on with the oldest file still there.
type LogReader struct {
	dir, stream string
	follow      bool

	f   *os.File    // file being read; nil until one exists
	fi  os.FileInfo // identity of f, to follow it through a rename
	buf []byte      // read but not yet returned
	rd  []byte
}

// OpenLogs opens the stdout or stderr logs of the task in taskDir. Nothing
// is read until the first ReadLine (or Tail); a stream with no output yet
// reads as empty, or, when following, waits for output.
func OpenLogs(taskDir, stream string, follow bool) (*LogReader, error) {
	if stream != Stdout && stream != Stderr {
		return nil, fmt.Errorf("runtime: unknown log stream %q, want %q or %q", stream, Stdout, Stderr)
	}
	dir := logDir(taskDir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("runtime: open logs: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("runtime: open logs: %s is not a directory", dir)
	}
	return &LogReader{dir: dir, stream: stream, follow: follow, rd: make([]byte, 32<<10)}, nil
}

// ReadLine returns the next line without its newline. At the end of the
// stream it returns io.EOF, or, when following, waits for more output
// until ctx is done and returns ctx's error. A last line without a newline
// is returned at the end when not following; when following it is held
// back until its newline arrives (or it reaches maxLineBytes).
func (r *LogReader) ReadLine(ctx context.Context) (string, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			return r.take(i, i+1), nil
		}
		if len(r.buf) >= maxLineBytes {
			return r.take(maxLineBytes, maxLineBytes), nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := r.fill()
		if err != nil {
			return "", err
		}
		if n > 0 {
			continue
		}
		if !r.follow {
			if len(r.buf) > 0 {
				return r.take(len(r.buf), len(r.buf)), nil
			}
			return "", io.EOF
		}
		if timer == nil {
			timer = time.NewTimer(logPoll)
		} else {
			timer.Reset(logPoll)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-timer.C:
		}
	}
}

// take returns buf[:end] and drops buf[:next].
func (r *LogReader) take(end, next int) string {
	s := string(r.buf[:end])
	r.buf = append(r.buf[:0], r.buf[next:]...)
	return s
}

// Close releases the file being read.
func (r *LogReader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f, r.fi = nil, nil
	return err
}

// fill appends what is available to buf, moving on to the next file when
// the current one has been rotated and read to its end. It returns 0 with
// no error when there is nothing new.
func (r *LogReader) fill() (int, error) {
	for {
		if r.f == nil {
			ok, err := r.openNext()
			if err != nil || !ok {
				return 0, err
			}
		}
		n, err := r.f.Read(r.rd)
		if n > 0 {
			r.buf = append(r.buf, r.rd[:n]...)
			return n, nil
		}
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("runtime: read %s log: %w", r.stream, err)
		}
		live, err := os.Stat(livePath(r.dir, r.stream))
		if err == nil && os.SameFile(live, r.fi) {
			return 0, nil
		}
		// The file is no longer the live one, so it will not grow: the
		// writer renames only after its last write. Read what came in
		// since the end of file above, then go on with its successor.
		if n, err := r.f.Read(r.rd); n > 0 {
			r.buf = append(r.buf, r.rd[:n]...)
			return n, nil
		} else if err != nil && err != io.EOF {
			return 0, fmt.Errorf("runtime: read %s log: %w", r.stream, err)
		}
		ok, err := r.openNext()
		if err != nil || !ok {
			return 0, err
		}
	}
}

// openNext replaces the current file (if any) with the one written after
// it: the oldest rotated file newer than it, else the live file. It
// reports false, keeping the current file, if there is none yet.
func (r *LogReader) openNext() (bool, error) {
	for {
		seqs, err := listSeqs(r.dir, r.stream)
		if err != nil {
			return false, fmt.Errorf("runtime: read %s log: %w", r.stream, err)
		}
		after := r.currentSeq(seqs)
		var next []int
		for _, s := range seqs {
			if s > after {
				next = append(next, s)
			}
		}
		if len(next) > 0 {
			f, err := os.Open(seqPath(r.dir, r.stream, next[0]))
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted by a rotation since the listing
			}
			if err != nil {
				return false, fmt.Errorf("runtime: read %s log: %w", r.stream, err)
			}
			return true, r.replace(f)
		}
		f, err := os.Open(livePath(r.dir, r.stream))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("runtime: read %s log: %w", r.stream, err)
		}
		// A rotation between the listing and the open would skip the
		// file it renamed; look again and retry if one appeared.
		again, err := listSeqs(r.dir, r.stream)
		if err == nil && len(again) > 0 && again[len(again)-1] > after {
			f.Close()
			continue
		}
		return true, r.replace(f)
	}
}

// currentSeq is the sequence number of the file being read, if it is a
// rotated file still present; 0 (before every rotated file) otherwise.
func (r *LogReader) currentSeq(seqs []int) int {
	if r.fi == nil {
		return 0
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		fi, err := os.Stat(seqPath(r.dir, r.stream, seqs[i]))
		if err == nil && os.SameFile(fi, r.fi) {
			return seqs[i]
		}
	}
	return 0
}

func (r *LogReader) replace(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("runtime: read %s log: %w", r.stream, err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.fi = f, fi
	return nil
}

// Tail positions r at the start of the last n lines of the stream, so that
// ReadLine returns those lines and then, when following, whatever comes
// after them. It must be called before the first ReadLine.
func (r *LogReader) Tail(n int) error {
	if r.f != nil || len(r.buf) > 0 {
		return errors.New("runtime: Tail must be called before reading")
	}
	files, err := r.openAll()
	if err != nil || len(files) == 0 {
		return err
	}
	i, off, err := lineStart(files, max(n, 0))
	if err != nil {
		for _, f := range files {
			f.f.Close()
		}
		return fmt.Errorf("runtime: tail %s log: %w", r.stream, err)
	}
	for j, f := range files {
		if j != i {
			f.f.Close()
		}
	}
	if _, err := files[i].f.Seek(off, io.SeekStart); err != nil {
		files[i].f.Close()
		return fmt.Errorf("runtime: tail %s log: %w", r.stream, err)
	}
	r.f, r.fi = files[i].f, files[i].fi
	return nil
}

type openLog struct {
	f  *os.File
	fi os.FileInfo
}

// openAll opens every file of the stream, oldest first.
func (r *LogReader) openAll() ([]openLog, error) {
	seqs, err := listSeqs(r.dir, r.stream)
	if err != nil {
		return nil, fmt.Errorf("runtime: tail %s log: %w", r.stream, err)
	}
	paths := make([]string, 0, len(seqs)+1)
	for _, s := range seqs {
		paths = append(paths, seqPath(r.dir, r.stream, s))
	}
	paths = append(paths, livePath(r.dir, r.stream))
	var files []openLog
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		var fi os.FileInfo
		if err == nil {
			if fi, err = f.Stat(); err != nil {
				f.Close()
			}
		}
		if err != nil {
			for _, o := range files {
				o.f.Close()
			}
			return nil, fmt.Errorf("runtime: tail %s log: %w", r.stream, err)
		}
		files = append(files, openLog{f, fi})
	}
	return files, nil
}

// lineStart finds where the last n lines of the concatenated files begin:
// scanning backwards, just after the n-th newline that ends a line before
// them. The stream's final newline ends the last line and is not counted.
func lineStart(files []openLog, n int) (file int, off int64, err error) {
	last := len(files) - 1
	if n == 0 {
		return last, files[last].fi.Size(), nil
	}
	buf := make([]byte, 32<<10)
	atEnd := true
	for i := last; i >= 0; i-- {
		end := files[i].fi.Size()
		for end > 0 {
			start := max(0, end-int64(len(buf)))
			b := buf[:end-start]
			if _, err := files[i].f.ReadAt(b, start); err != nil && err != io.EOF {
				return 0, 0, err
			}
			for j := len(b) - 1; j >= 0; j-- {
				if b[j] != '\n' {
					atEnd = false
					continue
				}
				if atEnd {
					atEnd = false
					continue
				}
				if n--; n == 0 {
					return i, start + int64(j) + 1, nil
				}
			}
			end = start
		}
	}
	return 0, 0, nil
}
