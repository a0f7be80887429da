package mlbridge

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
)

type logRecord struct {
	level slog.Level
	msg   string
	attrs []any
}

const maxLogAttrs = 20

// parseLogJSON reads one structured log line of the SDK. The line is
// already bounded by maxLogLine; fields beyond maxLogAttrs are dropped.
func parseLogJSON(line string) (logRecord, bool) {
	if !strings.HasPrefix(line, "{") {
		return logRecord{}, false
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return logRecord{}, false
	}
	msg, ok := m["msg"].(string)
	if !ok {
		return logRecord{}, false
	}
	rec := logRecord{level: slog.LevelInfo, msg: msg}
	switch lv, _ := m["level"].(string); strings.ToLower(lv) {
	case "debug":
		rec.level = slog.LevelDebug
	case "warn", "warning":
		rec.level = slog.LevelWarn
	case "error", "critical", "fatal":
		rec.level = slog.LevelError
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "msg" && k != "level" && k != "ts" && k != "worker" && k != "stream" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if len(keys) > maxLogAttrs {
		keys = keys[:maxLogAttrs]
	}
	for _, k := range keys {
		rec.attrs = append(rec.attrs, k, m[k])
	}
	return rec, true
}
