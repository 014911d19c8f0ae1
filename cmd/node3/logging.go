package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// newLogger logs to stderr (text) and to dir/logs/node3_<role>_<date>.log
// (JSON). It returns a function that closes the file.
func newLogger(stderr io.Writer, level, dir, role string) (*slog.Logger, func(), error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	handlers := []slog.Handler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv})}
	closeFn := func() {}
	if dir != "" {
		logDir := filepath.Join(dir, "logs")
		if err := os.MkdirAll(logDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("log directory: %w", err)
		}
		name := fmt.Sprintf("node3_%s_%s.log", role, time.Now().Format(time.DateOnly))
		f, err := os.OpenFile(filepath.Join(logDir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		handlers = append(handlers, slog.NewJSONHandler(f, &slog.HandlerOptions{Level: lv}))
		closeFn = func() { f.Close() }
	}
	return slog.New(slog.NewMultiHandler(handlers...)), closeFn, nil
}

func defaultDataDir() string {
	if d := os.Getenv("NODE3_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".node3"
	}
	return filepath.Join(home, ".node3")
}
