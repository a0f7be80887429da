"""The model registry filled by the @model decorator."""

import inspect
import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXECUTORS = ("process", "thread", "inline", "async")


class ModelError(Exception):
    """A model refuses its input; the message goes back to the caller.

    The Go side reports it as a model error (HTTP 422 at the API). Any
    ValueError or TypeError raised by a model is treated the same way.
    """


class Model:
    __slots__ = ("name", "fn", "idempotent", "executor", "raw", "description")

    def __init__(self, name, fn, idempotent, executor, raw, description):
        self.name = name
        self.fn = fn
        self.idempotent = idempotent
        self.executor = executor
        self.raw = raw
        self.description = description

    def info(self):
        return {
            "name": self.name,
            "idempotent": self.idempotent,
            "executor": self.executor,
            "raw": self.raw,
            # A cancel frame stops async models (the task is cancelled) and
            # process models (the child is killed); a thread cannot be stopped.
            "cancellable": self.executor in ("async", "process"),
            "description": self.description,
        }


_registry = {}


def model(name, *, idempotent=False, executor=None, raw=False, description=""):
    """Register the decorated function as model `name`.

    The function receives the request's data decoded from JSON and returns a
    JSON-serialisable value (or, with raw=True, receives and returns str).

    executor chooses where it runs: "process" (the default for plain
    functions: a process pool, so CPU-bound work neither holds the GIL nor
    stalls the event loop; the function must be defined at module level),
    "thread", "inline" (on the event loop: only for trivial work) or "async"
    (the default for coroutine functions, awaited on the event loop).

    idempotent=True advertises that a call may safely run twice: the Go
    supervisor then retries it once on another worker if its worker crashes.
    The decorator returns the function unchanged so it stays picklable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid model name {name!r}")

    def deco(fn):
        ex = executor
        if ex is None or ex == "auto":
            ex = "async" if inspect.iscoroutinefunction(fn) else "process"
        if ex not in EXECUTORS:
            raise ValueError(f"model {name}: unknown executor {ex!r}")
        if (ex == "async") != inspect.iscoroutinefunction(fn):
            raise ValueError(f"model {name}: executor {ex!r} does not fit {fn!r}")
        if ex == "process" and "<locals>" in getattr(fn, "__qualname__", ""):
            raise ValueError(f"model {name}: process models must be module-level functions")
        old = _registry.get(name)
        if old is not None and old.fn is not fn:
            if (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"model {name!r} is registered twice")
        _registry[name] = Model(name, fn, bool(idempotent), ex, bool(raw), str(description))
        return fn

    return deco


def get(name):
    return _registry.get(name)


def models():
    return [m for _, m in sorted(_registry.items())]


def clear():
    """Forget every model (tests only)."""
    _registry.clear()
