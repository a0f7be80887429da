package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

// startML starts the inference workers unless --ml-workers is 0. A worker
// pool that cannot start (say, no Python on this machine) does not stop the
// server: it logs why, and inference answers 503 until it is fixed.
func startML(ctx context.Context, cfg *serveConfig, log *slog.Logger) (*mlbridge.Supervisor, error) {
	if cfg.mlWorkers == 0 {
		return nil, nil
	}
	command, _ := splitCommand(cfg.mlWorker) // validated with the config
	var modules []string
	for _, m := range strings.Split(cfg.mlModules, ",") {
		if m = strings.TrimSpace(m); m != "" {
			modules = append(modules, m)
		}
	}
	var paths []string
	for _, p := range strings.Split(cfg.mlPath, ":") {
		if p = strings.TrimSpace(p); p != "" {
			paths = append(paths, p)
		}
	}
	sup, err := mlbridge.New(mlbridge.Config{
		Workers: cfg.mlWorkers, Command: command, Python: cfg.mlPython, Modules: modules, PythonPath: paths,
		CallTimeout: cfg.mlTimeout,
	}, log.With("component", "ml"))
	if err != nil {
		return nil, fmt.Errorf("ML workers: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := sup.Start(startCtx); err != nil {
		log.Error("ML workers did not start; inference is unavailable", "err", err)
	}
	return sup, nil
}

// splitCommand splits a command line into words: spaces separate, single
// and double quotes group, a backslash escapes the next character. No shell
// is involved, so nothing is expanded or interpreted.
func splitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote, escaped := false, rune(0), false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case unicode.IsControl(r):
			return nil, errors.New("control character in the command")
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, errors.New("unterminated quote or escape")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
