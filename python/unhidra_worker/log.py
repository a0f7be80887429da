"""Structured logs: one JSON object per line on stderr.

The Go supervisor reads these lines and re-emits them through its slog logger
with the worker index attached, mapping "level" and "msg" and keeping the other
keys as attributes.
"""

import json
import sys
import time

_LEVELS = ("debug", "info", "warn", "error")


def log(level: str, msg: str, **fields) -> None:
    if level not in _LEVELS:
        level = "info"
    rec = {"ts": round(time.time(), 3), "level": level, "msg": msg}
    for k, v in fields.items():
        if k not in rec:
            rec[k] = v
    try:
        line = json.dumps(rec, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        line = json.dumps({"ts": rec["ts"], "level": level, "msg": msg})
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone (parent died): nothing useful left to do


def debug(msg, **f):
    log("debug", msg, **f)


def info(msg, **f):
    log("info", msg, **f)


def warn(msg, **f):
    log("warn", msg, **f)


def error(msg, **f):
    log("error", msg, **f)
