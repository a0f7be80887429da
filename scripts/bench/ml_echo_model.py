"""Trivial model for `scripts/bench.sh ab` (loaded with --ml-modules): returns
its input unchanged, on the worker's event loop, so an API call measures the
path (HTTP, auth, the bridge, IPC, JSON) and no model work."""

from unhidra_worker import model


@model("echo", executor="inline", idempotent=True, description="returns its input (benchmark)")
def echo(inp):
    return inp
