"""Seeded synthetic fleets for measuring the heap-trend model.

Two kinds of device, one point per heartbeat (default 60 s):

- ESP32-like: free heap 120–300 KB; allocation churn (white noise, 0.1–0.5 %
  of the level, quantised to 4 bytes); transient dips (a TLS or HTTP buffer
  held for 1–3 heartbeats: 1 % of heartbeats, 2–8 KB); fragmentation steps
  (0.1 % of heartbeats, ±0.3–1 % of the level, persisting).
- Linux-host-like (MemAvailable): 0.5–16 GB; page-cache and process churn
  as an AR(1) process (φ 0.7–0.9 per minute, stationary σ 0.1–0.5 % of
  the level); spikes (2 % of heartbeats, 1–6 % down for one point); steps
  (processes starting and stopping: 0.2 % of heartbeats, ±0.5–2 %,
  persisting).

A leaking series adds a steady decline of `leak_pct_per_hour` of the
starting level per hour. Everything is drawn from random.Random(seed): the
same seed gives the same fleet.
"""

import math
import random


def _leaking(t, leak_hours):
    """Seconds of leaking by time t: a leak fixed after leak_hours stops."""
    return t if leak_hours is None else min(t, leak_hours * 3600.0)


def esp32_series(rng, points, step, leak_pct_per_hour=0.0, leak_hours=None):
    level = rng.uniform(120_000, 300_000)
    sigma = level * rng.uniform(0.001, 0.005)
    leak = level * leak_pct_per_hour / 100.0 / 3600.0
    out, offset, dip_left, dip = [], 0.0, 0, 0.0
    for i in range(points):
        t = i * step
        if rng.random() < 0.001:
            offset += level * rng.uniform(0.003, 0.01) * rng.choice((-1, 1))
        if dip_left == 0 and rng.random() < 0.01:
            dip_left, dip = rng.randint(1, 3), rng.uniform(2_000, 8_000)
        v = level + offset - leak * _leaking(t, leak_hours) + rng.gauss(0, sigma)
        if dip_left:
            v -= dip
            dip_left -= 1
        out.append([float(t), float(max(0, int(v) // 4 * 4))])
    return out


def linux_series(rng, points, step, leak_pct_per_hour=0.0, leak_hours=None):
    level = rng.uniform(0.5e9, 16e9)
    phi = rng.uniform(0.7, 0.9) ** (step / 60.0)
    sd = level * rng.uniform(0.001, 0.005)
    innov = sd * math.sqrt(1 - phi * phi)
    leak = level * leak_pct_per_hour / 100.0 / 3600.0
    out, ar, offset = [], rng.gauss(0, sd), 0.0
    for i in range(points):
        t = i * step
        ar = phi * ar + rng.gauss(0, innov)
        if rng.random() < 0.002:
            offset += level * rng.uniform(0.005, 0.02) * rng.choice((-1, 1))
        v = level + offset + ar - leak * _leaking(t, leak_hours)
        if rng.random() < 0.02:
            v -= level * rng.uniform(0.01, 0.06)
        out.append([float(t), float(max(0, int(v)))])
    return out


KINDS = {"esp32": esp32_series, "linux": linux_series}


def fleet(seed, count, hours, step=60, leak_range=None, leak_hours=None):
    """count series alternating ESP32-like and Linux-host-like; leaking
    ones decline at a rate drawn from leak_range (% of level per hour), for
    leak_hours if given (then the leak is fixed and the level stays)."""
    rng = random.Random(seed)
    points = int(hours * 3600 / step) + 1
    t0 = 1_800_000_000.0
    out = []
    for i in range(count):
        kind = "esp32" if i % 2 == 0 else "linux"
        rate = rng.uniform(*leak_range) if leak_range else 0.0
        s = KINDS[kind](rng, points, step, rate, leak_hours)
        out.append((kind, rate, [[t0 + t, v] for t, v in s]))
    return out
