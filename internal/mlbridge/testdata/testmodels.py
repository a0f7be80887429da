"""Test models loaded into the SDK worker with --module, as an operator would.

Coordination between requests (and across worker processes) goes through
files in a directory named by the request, so tests never rely on timing.
"""

import asyncio
import os
import time

from unhidra_worker import ModelError, model


def _enter(d, tag):
    path = os.path.join(d, f"{tag}.{os.getpid()}.{time.monotonic_ns()}")
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    return path


def _count(d, tag):
    return sum(1 for n in os.listdir(d) if n.startswith(tag + "."))


@model("barrier")
async def barrier(inp):
    """Wait until k requests are inside (anywhere); fail after timeout seconds."""
    d, k, timeout = inp["dir"], inp["k"], inp.get("timeout", 20)
    _enter(d, "in")
    deadline = time.monotonic() + timeout
    while _count(d, "in") < k:
        if time.monotonic() > deadline:
            raise ModelError(f"only {_count(d, 'in')} of {k} requests arrived together")
        await asyncio.sleep(0.005)
    return {"pid": os.getpid(), "seen": _count(d, "in")}


def cpu_barrier(inp):
    """Same, but blocking, in the process pool: proves the pool runs k at once."""
    d, k, timeout = inp["dir"], inp["k"], inp.get("timeout", 20)
    _enter(d, "cpu")
    deadline = time.monotonic() + timeout
    while _count(d, "cpu") < k:
        if time.monotonic() > deadline:
            raise ModelError(f"only {_count(d, 'cpu')} of {k} arrived together")
        time.sleep(0.005)
    return {"pid": os.getpid()}


model("cpu-barrier", executor="process")(cpu_barrier)


@model("hold")
async def hold(inp):
    """Mark arrival in dir, then wait until a 'release' file appears or timeout."""
    d = inp["dir"]
    _enter(d, "in")
    deadline = time.monotonic() + inp.get("timeout", 60)
    while not os.path.exists(os.path.join(d, "release")):
        if time.monotonic() > deadline:
            return {"released": False, "reply": inp.get("reply")}
        await asyncio.sleep(0.005)
    return {"released": True, "reply": inp.get("reply")}


@model("hold-once", idempotent=True)
async def hold_once(inp):
    """The first call anywhere hangs; later calls answer with their pid."""
    d = inp["dir"]
    first = os.path.join(d, "first")
    try:
        fd = os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return {"pid": os.getpid()}
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    await asyncio.sleep(3600)


@model("echo", idempotent=True, executor="inline")
def echo(inp):
    return inp


@model("pid", executor="inline")
def pid(inp):
    return {"pid": os.getpid()}


@model("not-json", raw=True, executor="inline")
def not_json(inp):
    return "this is not json"


@model("boom", executor="inline")
def boom(inp):
    raise RuntimeError("secret internal detail")


def cpu_hold(inp):
    """Blocks a pool process (not the event loop) until 'release' appears."""
    d = inp["dir"]
    _enter(d, "cpu")
    deadline = time.monotonic() + inp.get("timeout", 60)
    while not os.path.exists(os.path.join(d, "release")):
        if time.monotonic() > deadline:
            raise ModelError("never released")
        time.sleep(0.005)
    return {"pid": os.getpid()}


model("cpu-hold", executor="process")(cpu_hold)


@model("grow", executor="inline")
def grow(inp):
    return {"x": "y" * inp["n"]}


@model("echo-raw", idempotent=True, executor="inline", raw=True)
def echo_raw(inp):
    """Returns data unchanged without JSON work: measures the IPC path alone."""
    return inp


def pool_crash(inp):
    """Kills its own pool process: the worker must survive and rebuild the pool."""
    os._exit(7)


model("pool-crash", executor="process")(pool_crash)


def spin(inp):
    """Burn CPU in the process pool for `seconds`, after marking arrival (with the pid)."""
    _enter(inp["dir"], "spin")
    deadline = time.monotonic() + inp.get("seconds", 60)
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"pid": os.getpid(), "loops": n}


model("spin", executor="process")(spin)
