"""Unhidra ML worker SDK (standard library only).

Write models as plain functions and register them:

    from unhidra_worker import model, ModelError

    @model("word-count", idempotent=True)
    def word_count(inp):
        if not isinstance(inp, dict) or not isinstance(inp.get("text"), str):
            raise ModelError("want {\"text\": str}")
        return {"words": len(inp["text"].split())}

then run `python3 -m unhidra_worker --module yourmodule SOCKET_PATH`, or let
the Unhidra server start it (its ML options name your module). The built-in
models (heap-trend, telemetry-anomaly, summarize) are registered unless
--no-builtins is given.
"""

from .registry import ModelError, model
from .server import Worker, serve

__all__ = ["ModelError", "Worker", "model", "serve"]
