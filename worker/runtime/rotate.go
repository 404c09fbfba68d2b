package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// LogConfig bounds a task's logs: each stream is at most MaxFiles files of
// at most MaxBytes each, so a chatty task cannot fill the disk.
type LogConfig struct {
	MaxBytes int64 // per file; 0 means 10 MiB
	MaxFiles int   // per stream, the live file included; 0 means 3
}

// DefaultLogConfig is 10 MiB × 3 files per stream.
var DefaultLogConfig = LogConfig{MaxBytes: 10 << 20, MaxFiles: 3}

func (c LogConfig) withDefaults() LogConfig {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultLogConfig.MaxBytes
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = DefaultLogConfig.MaxFiles
	}
	return c
}

// livePath is the file a stream is written to now: DIR/stdout.log.
func livePath(dir, stream string) string {
	return filepath.Join(dir, stream+".log")
}

// seqPath is a rotated file: DIR/stdout.log.SEQ. Rotated files are never
// renamed again, only deleted, so a reader that knows which one it is in
// knows which one comes next; a higher SEQ is newer.
func seqPath(dir, stream string, seq int) string {
	return livePath(dir, stream) + "." + strconv.Itoa(seq)
}

// listSeqs returns the sequence numbers of stream's rotated files, oldest
// first.
func listSeqs(dir, stream string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	prefix := stream + ".log."
	var seqs []int
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil && n > 0 && strconv.Itoa(n) == rest {
			seqs = append(seqs, n)
		}
	}
	sort.Ints(seqs)
	return seqs, nil
}

// rotatingWriter writes one stream of a task's logs, rotating by size. It
// is safe for concurrent use.
type rotatingWriter struct {
	dir, stream string
	cfg         LogConfig

	mu   sync.Mutex
	f    *os.File
	size int64
	seq  int   // newest rotated file
	err  error // first write failure, reported once the task ends
}

// openRotatingWriter appends to the live file, so a restarted task keeps
// its earlier output.
func openRotatingWriter(dir, stream string, cfg LogConfig) (*rotatingWriter, error) {
	w := &rotatingWriter{dir: dir, stream: stream, cfg: cfg.withDefaults()}
	seqs, err := listSeqs(dir, stream)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", stream, err)
	}
	if len(seqs) > 0 {
		w.seq = seqs[len(seqs)-1]
	}
	if err := w.openLive(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *rotatingWriter) openLive() error {
	f, err := os.OpenFile(livePath(w.dir, w.stream), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open %s log: %w", w.stream, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open %s log: %w", w.stream, err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write splits p at file boundaries, so no file exceeds MaxBytes (a line
// may span two files; LogReader joins it again). After a failure it keeps
// accepting and dropping output, so the task never blocks on a full pipe.
func (w *rotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 && w.err == nil {
		if w.f == nil {
			w.err = errors.New("log closed")
			break
		}
		room := w.cfg.MaxBytes - w.size
		if room <= 0 {
			if w.err = w.rotate(); w.err != nil {
				break
			}
			room = w.cfg.MaxBytes
		}
		chunk := p[:min(int64(len(p)), room)]
		m, err := w.f.Write(chunk)
		w.size += int64(m)
		p = p[m:]
		if err != nil {
			w.err = err
		}
	}
	return n, nil
}

// rotate renames the live file to the next sequence number, deletes files
// beyond MaxFiles and starts a new live file.
func (w *rotatingWriter) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	next := w.seq + 1
	if err := os.Rename(livePath(w.dir, w.stream), seqPath(w.dir, w.stream, next)); err != nil {
		return err
	}
	w.seq = next
	seqs, err := listSeqs(w.dir, w.stream)
	if err != nil {
		return err
	}
	keep := w.cfg.MaxFiles - 1
	for i := 0; i < len(seqs)-keep; i++ {
		if err := os.Remove(seqPath(w.dir, w.stream, seqs[i])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return w.openLive()
}

// Close closes the live file and returns the first failure of the
// writer's life, if any.
func (w *rotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		if err := w.f.Close(); err != nil && w.err == nil {
			w.err = err
		}
		w.f = nil
	}
	if w.err != nil {
		return fmt.Errorf("runtime: %s log: %w", w.stream, w.err)
	}
	return nil
}
