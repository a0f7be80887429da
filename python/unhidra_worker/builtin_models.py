"""Registers the built-in models (imported by the worker unless --no-builtins).

All three are pure functions of their input, so they are idempotent, and CPU
bound, so they run in the process pool.
"""

from . import anomaly, heap, summarize
from .registry import model

model("heap-trend", idempotent=True,
      description="memory-leak trend of a free-heap series (GLS line with AR(1) noise and lasting steps)")(heap.analyse)
model("telemetry-anomaly", idempotent=True,
      description="outlying readings by median/MAD modified z-score")(anomaly.detect)
model("summarize", idempotent=True,
      description="extractive summary of chat messages")(summarize.summarize)
