package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// raftLogger returns an hclog.Logger for hashicorp/raft and raft-wal that
// writes through slog, so that Raft's messages follow --log-level and
// --log-format like everything else, tagged component=raft.
func raftLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Error
	for _, c := range []struct {
		s slog.Level
		h hclog.Level
	}{{slog.LevelDebug, hclog.Debug}, {slog.LevelInfo, hclog.Info}, {slog.LevelWarn, hclog.Warn}} {
		if l.Enabled(context.Background(), c.s) {
			level = c.h
			break
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: level, JSONFormat: true,
		Output: &slogWriter{l: l.With("component", "raft")},
	})
}

// slogWriter turns hclog's JSON lines into slog records.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err != nil {
		w.l.Warn(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	lvl := slog.LevelInfo
	switch rec["@level"] {
	case "trace", "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	msg, _ := rec["@message"].(string)
	args := make([]any, 0, 2*len(rec))
	for k, v := range rec {
		if strings.HasPrefix(k, "@") {
			continue
		}
		args = append(args, k, v)
	}
	w.l.Log(context.Background(), lvl, msg, args...)
	return len(p), nil
}
