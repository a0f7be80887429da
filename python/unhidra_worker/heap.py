"""heap-trend: is a device leaking memory, and when will it run out?

Input:  {"series": [[unix_seconds, free_heap_bytes], ...],
         "reboots"?: [unix_seconds, ...], "floor_bytes"?: 0,
         "min_span_minutes"?: 60, "min_points"?: 30, "z_min"?: 2.5,
         "min_slope_pct_per_hour"?: 0.5, "min_slope_bytes_per_hour"?: number}
Output: {"leak": bool, "confidence": percent, "reason": text,
         "evidence": "insufficient"|"enough", "slope_bytes_per_hour",
         "slope_pct_per_hour", "hours_to_exhaustion": number|null, "z",
         "p_value", "method", "points_used", "span_minutes",
         "current_free_bytes", "segments": [...], "reboots_detected": [...]}

A reboot resets the heap, so the series is cut into segments at reboots (the
given ones, or, when none are given, upward jumps far beyond the noise) and
only the latest segment is judged. A leak is claimed only with enough
evidence: the segment must span min_span_minutes with min_points points.
Then the points are summarised per 5-minute block (the median of each
block's upper half, so transient allocations do not pull it down); a
block-to-block jump far outside the others (a lasting step: a process
started, a buffer kept) is taken out, since a leak is a steady decline and
not a step; the slope is the least-squares slope of what remains, and its
standard error is widened for the residuals' lag-1 autocorrelation (free
memory wanders; its neighbouring blocks are not independent). A leak is:
z = -slope / SE >= z_min, a loss of at least min_slope_pct_per_hour of the
median level per hour, and a decline in both halves of the segment of at
least half of that (a trend, not one event). The defaults keep
false alarms under 1 % on the synthetic fleets of fleetsim.py while finding
95 % of leaks of 1 %/h within 2 hours of 60-second heartbeats (measured by
tests/test_fleet.py; figures in docs/benchmarks.md).
"""

import math

from . import stats
from .registry import ModelError

MAX_POINTS = 100_000
MAX_REBOOTS = 10_000
MAX_ANALYSED = 1_000  # per segment; longer segments are evenly subsampled (O(n^2) steps)
MIN_POINTS = 8  # for a segment to decide alone
MAX_SEGMENTS_REPORTED = 20
JUMP_FRACTION = 0.05  # an upward jump > 5% of the median level...
JUMP_NOISE = 8.0  # ...and > 8 robust sigmas of the step noise is a reboot


def _parse(inp):
    if not isinstance(inp, dict):
        raise ModelError("input must be an object with a \"series\" array")
    series = inp.get("series")
    if not isinstance(series, list) or not series:
        raise ModelError("\"series\" must be a non-empty array of [unix_seconds, free_heap_bytes]")
    if len(series) > MAX_POINTS:
        raise ModelError(f"\"series\" has {len(series)} points; the limit is {MAX_POINTS}")
    pts = []
    for i, p in enumerate(series):
        if not (isinstance(p, list) and len(p) == 2 and stats.is_number(p[0]) and stats.is_number(p[1])):
            raise ModelError(f"series[{i}] must be [unix_seconds, free_heap_bytes] with finite numbers")
        if p[1] < 0:
            raise ModelError(f"series[{i}]: free heap cannot be negative")
        pts.append((float(p[0]), float(p[1])))
    reboots = inp.get("reboots")
    if reboots is not None:
        if not isinstance(reboots, list) or len(reboots) > MAX_REBOOTS:
            raise ModelError(f"\"reboots\" must be an array of at most {MAX_REBOOTS} unix times")
        if not all(stats.is_number(r) for r in reboots):
            raise ModelError("\"reboots\" must hold finite numbers")
        reboots = sorted(float(r) for r in reboots)
    alpha = inp.get("alpha", 0.05)
    if not stats.is_number(alpha) or not 0 < alpha < 0.5:
        raise ModelError("\"alpha\" must be in (0, 0.5)")
    min_slope = inp.get("min_slope_bytes_per_hour")
    if min_slope is not None and (not stats.is_number(min_slope) or min_slope < 0):
        raise ModelError("\"min_slope_bytes_per_hour\" must be a non-negative number")
    floor = inp.get("floor_bytes", 0)
    if not stats.is_number(floor) or floor < 0:
        raise ModelError("\"floor_bytes\" must be a non-negative number")
    pts.sort(key=lambda p: p[0])  # stable: equal times keep their order
    return pts, reboots, float(alpha), min_slope, float(floor)


def _split_at_reboots(pts, reboots):
    segs, cur, k = [], [], 0
    for t, v in pts:
        moved = False
        while k < len(reboots) and reboots[k] <= t:
            k += 1
            moved = True
        if moved and cur:
            segs.append(cur)
            cur = []
        cur.append((t, v))
    if cur:
        segs.append(cur)
    return segs


def _split_at_jumps(pts):
    if len(pts) < 3:
        return [pts], []
    steps = [pts[i][1] - pts[i - 1][1] for i in range(1, len(pts))]
    noise = stats.MAD_TO_SIGMA * stats.mad(steps)
    level = stats.median([v for _, v in pts])
    threshold = max(JUMP_FRACTION * level, JUMP_NOISE * noise, 1.0)
    segs, cur, detected = [], [pts[0]], []
    for i in range(1, len(pts)):
        # A reboot lifts the level for good; a spike's recovery does not.
        before = stats.median([v for _, v in pts[max(0, i - 3):i]])
        after = stats.median([v for _, v in pts[i:i + 3]])
        if steps[i - 1] > threshold and after - before > threshold:
            segs.append(cur)
            cur = []
            detected.append(pts[i][0])
        cur.append(pts[i])
    segs.append(cur)
    return segs, detected


BLOCK_SECONDS = 300
STEP_SIGMAS = 5.0  # a block-to-block jump beyond this many robust sigmas is a step
MAX_RHO = 0.95
HALF_FRACTION = 0.5  # each half must lose at least this share of the minimum rate


def _blocks(seg):
    """Per BLOCK_SECONDS block, the median of its upper half of values
    and the median time of those points."""
    t0 = seg[0][0]
    groups = {}
    for t, v in seg:
        groups.setdefault(int((t - t0) // BLOCK_SECONDS), []).append((t, v))
    bt, by = [], []
    for k in sorted(groups):
        upper = sorted(groups[k], key=lambda p: p[1])[len(groups[k]) // 2:]
        bt.append(stats.median([t for t, _ in upper]))
        by.append(stats.median([v for _, v in upper]))
    return bt, by


def _without_steps(by):
    """The block levels with outlying block-to-block jumps replaced by the
    typical one; also how many were replaced."""
    if len(by) < 4:
        return list(by), 0
    d = [by[i] - by[i - 1] for i in range(1, len(by))]
    md = stats.median(d)
    sd = stats.MAD_TO_SIGMA * stats.mad(d)
    out, steps = [by[0]], 0
    for x in d:
        if sd > 0 and abs(x - md) > STEP_SIGMAS * sd:
            x, steps = md, steps + 1
        out.append(out[-1] + x)
    return out, steps


def _ols(ts, ys):
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx <= 0:
        return 0.0, my, [0.0] * n, 0.0
    b = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sxx
    a = my - b * mt
    return b, a, [y - a - b * t for t, y in zip(ts, ys)], sxx


def _trend(seg):
    """Slope (bytes/s), intercept, z of a decline, lag-1 autocorrelation,
    steps removed and the slopes of the two halves."""
    bt, by = _blocks(seg)
    ys, steps = _without_steps(by)
    n = len(ys)
    if n < 4:
        return None
    b, a, res, sxx = _ols(bt, ys)
    den = sum(r * r for r in res)
    rho = 0.0
    if den > 0:
        rho = sum(res[i] * res[i - 1] for i in range(1, n)) / den
        rho = rho + (1 + 4 * rho) / n  # small-sample bias of the estimate
    rho = min(max(rho, 0.0), MAX_RHO)
    var = den / (n - 2) / sxx * (1 + rho) / (1 - rho) if sxx > 0 else 0.0
    se = math.sqrt(var)
    if se > 0:
        z = -b / se
    else:
        z = math.inf if b < 0 else (-math.inf if b > 0 else 0.0)
    h = n // 2
    b1 = _ols(bt[:h], ys[:h])[0]
    b2 = _ols(bt[h:], ys[h:])[0]
    # Level at the last block, on the fitted line.
    return {"slope": b, "intercept": a, "z": z, "rho": rho, "steps": steps, "halves": (b1, b2), "blocks": n}


def _segment_stats(seg):
    out = {"start": seg[0][0], "end": seg[-1][0], "points": len(seg)}
    if len({t for t, _ in seg}) >= 2 and len(seg) >= 3:
        out["slope_bytes_per_hour"] = _ols([t for t, _ in seg], [v for _, v in seg])[0] * 3600.0
    else:
        out["slope_bytes_per_hour"] = None
    return out


def _pct(z):
    """The one-sided confidence of a decline, as a percentage (0-99.9)."""
    if z == math.inf:
        return 99.9
    if z == -math.inf:
        return 0.0
    p = 0.5 * math.erfc(z / math.sqrt(2))
    return round(min(99.9, max(0.0, 100.0 * (1.0 - p))), 1)


def _minutes(seconds):
    m = seconds / 60.0
    if m < 120:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def analyse(inp):
    pts, reboots, _alpha, min_slope, floor = _parse(inp)
    min_span = _number(inp, "min_span_minutes", 60, 1, 10_000) * 60.0
    min_points = int(_number(inp, "min_points", 30, 4, 100_000))
    z_min = _number(inp, "z_min", 2.5, 0.5, 20)
    min_pct = _number(inp, "min_slope_pct_per_hour", 0.5, 0, 100)
    if reboots is not None:
        segs, detected = _split_at_reboots(pts, reboots), []
    else:
        segs, detected = _split_at_jumps(pts)
    latest = segs[-1]
    span = latest[-1][0] - latest[0][0]
    level = stats.median([v for _, v in latest])
    if min_slope is None:
        min_slope = max(1.0, min_pct / 100.0 * level)
    out = {
        "leak": False, "confidence": 0.0, "evidence": "insufficient", "slope_bytes_per_hour": None,
        "slope_pct_per_hour": None, "hours_to_exhaustion": None, "z": None, "p_value": None,
        "method": "blocked_ols_ar1", "points_used": len(latest), "span_minutes": round(span / 60.0, 1),
        "min_span_minutes": min_span / 60.0, "min_points": min_points,
        "min_slope_bytes_per_hour": min_slope, "current_free_bytes": latest[-1][1],
        "segments": [_segment_stats(s) for s in segs[-MAX_SEGMENTS_REPORTED:]],
        "segment_count": len(segs), "reboots_detected": detected,
    }
    since = " since the last reboot" if len(segs) > 1 else ""
    if span < min_span or len(latest) < min_points:
        out["reason"] = (f"Not enough data to judge: {_minutes(span)} and {len(latest)} points{since}; "
                         f"a leak is judged after {_minutes(min_span)} and {min_points} points.")
        return out
    tr = _trend(latest)
    if tr is None:
        out["reason"] = "Too few 5-minute blocks of data to judge a trend."
        return out
    slope_h = tr["slope"] * 3600.0
    pct_h = -slope_h / level * 100.0 if level > 0 else 0.0
    t_last = latest[-1][0]
    current = max(0.0, tr["intercept"] + tr["slope"] * t_last)
    halves_ok = all(-b * 3600.0 >= HALF_FRACTION * min_slope for b in tr["halves"])
    leak = bool(tr["z"] >= z_min and -slope_h >= min_slope and halves_ok)
    out.update(evidence="enough", slope_bytes_per_hour=slope_h, slope_pct_per_hour=-pct_h,
               z=tr["z"] if math.isfinite(tr["z"]) else (1e9 if tr["z"] > 0 else -1e9),
               p_value=0.5 * math.erfc(tr["z"] / math.sqrt(2)) if math.isfinite(tr["z"]) else (0.0 if tr["z"] > 0 else 1.0),
               confidence=_pct(tr["z"]), current_free_bytes=current, steps_removed=tr["steps"],
               autocorrelation=round(tr["rho"], 3))
    out["leak"] = leak
    over = f"over the last {_minutes(span)} ({len(latest)} points{since})"
    if leak:
        out["hours_to_exhaustion"] = max(0.0, (current - floor) / -slope_h)
        out["reason"] = (f"Free memory fell steadily by {pct_h:.2f} % per hour {over}, in both halves of that time; "
                         f"a leak this steady is unlikely to be noise.")
    elif pct_h <= 0:
        out["reason"] = f"Free memory did not fall {over}."
    elif -slope_h < min_slope:
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}: below the "
                         f"{min_slope / level * 100.0:.2f} % per hour judged a leak.")
    elif not halves_ok:
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}, but not in both halves of that time: "
                         f"more like a one-off drop than a leak.")
    else:
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}, but no more steadily than its usual "
                         f"wandering; not enough to call it a leak.")
    return out


def _number(inp, name, default, lo, hi):
    v = inp.get(name, default)
    if not stats.is_number(v) or not lo <= v <= hi:
        raise ModelError(f"\"{name}\" must be a number from {lo} to {hi}")
    return float(v)
