"""Command line: python3 -m unhidra_worker [options] SOCKET_PATH.

The socket path is the last argument, as with the seed's inference worker.
"""

import argparse
import importlib
import os
import sys

from . import log, protocol, server


def load_module(spec):
    """Import a module by dotted name, or a .py file by path (its directory
    joins sys.path so process-pool children can import it by name too)."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise SystemExit(f"worker module file not found: {spec}")
        directory, filename = os.path.split(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = os.path.splitext(filename)[0]
    return importlib.import_module(spec)


def main(argv=None):
    p = argparse.ArgumentParser(prog="unhidra_worker")
    p.add_argument("--module", action="append", default=[],
                   help="module name or .py file that registers models (repeatable)")
    p.add_argument("--path", action="append", default=[],
                   help="extra import path, like PYTHONPATH (repeatable)")
    p.add_argument("--no-builtins", action="store_true", help="do not register the built-in models")
    p.add_argument("--max-frame", type=int, default=protocol.DEFAULT_MAX_FRAME)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="size of the process pool for CPU-bound models")
    p.add_argument("--grace", type=float, default=5.0, help="seconds to drain in-flight calls on SIGTERM")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when stdin reaches end of file (the parent holds the other end)")
    p.add_argument("socket", help="Unix socket path to listen on")
    args = p.parse_args(argv)
    if not 1 <= args.max_frame <= 1 << 31:
        raise SystemExit("--max-frame out of range")
    for extra in args.path:
        if extra not in sys.path:
            sys.path.insert(0, extra)
    if not args.no_builtins:
        from . import builtin_models  # noqa: F401  (registers on import)
    for spec in args.module:
        try:
            load_module(spec)
        except Exception as e:
            log.error("cannot load worker module", module=spec, error=repr(e))
            raise SystemExit(2)
    server.serve(args.socket, max_frame=args.max_frame, processes=args.processes,
                 watch_stdin=args.watch_stdin, grace=args.grace)


if __name__ == "__main__":
    main()
