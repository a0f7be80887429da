"""heap-trend: is a device leaking memory, and when will it run out?

Input:  {"series": [[unix_seconds, free_heap_bytes], ...],
         "reboots"?: [unix_seconds, ...],
         "alpha"?: 0.05, "min_slope_bytes_per_hour"?: number, "floor_bytes"?: 0}
Output: {"leak": bool, "slope_bytes_per_hour": number, "hours_to_exhaustion": number|null,
         "p_value", "z", "tau", "confidence", "method", "points_used",
         "current_free_bytes", "segments": [...], "reboots_detected": [...]}

A reboot resets the heap, so the series is cut into segments at reboots (the
given ones, or, when none are given, upward jumps far beyond the noise). The
decision uses the latest segment when it has enough points, otherwise a pooled
estimate over all segments: Sen's slope over within-segment pairs and the
Mann–Kendall S and variance summed over segments (the blocked form of the
test). A leak is a significant (p < alpha) downward trend steeper than a small
practical threshold.
"""

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
        if steps[i - 1] > threshold:
            segs.append(cur)
            cur = []
            detected.append(pts[i][0])
        cur.append(pts[i])
    segs.append(cur)
    return segs, detected


def _segment_stats(seg):
    idx = stats.even_sample(len(seg), MAX_ANALYSED)
    ts = [seg[i][0] for i in idx]
    ys = [seg[i][1] for i in idx]
    out = {"start": seg[0][0], "end": seg[-1][0], "points": len(seg), "points_used": len(idx)}
    distinct_t = len(set(ts)) >= 2
    if len(ts) >= 3 and distinct_t:
        slope, intercept = stats.theil_sen(ts, ys)
        s, var = stats.mk_s_and_var(ys)
        z = stats.mk_z(s, var)
        out.update(slope_bytes_per_hour=slope * 3600.0, p_value=stats.two_sided_p(z),
                   _slope=slope, _intercept=intercept, _s=s, _var=var, _ts=ts, _ys=ys)
    else:
        out.update(slope_bytes_per_hour=None, p_value=None)
    return out


def analyse(inp):
    pts, reboots, alpha, min_slope, floor = _parse(inp)
    if reboots is not None:
        segs, detected = _split_at_reboots(pts, reboots), []
    else:
        segs, detected = _split_at_jumps(pts)
    seg_stats = [_segment_stats(s) for s in segs]
    latest = seg_stats[-1]
    level = stats.median([v for _, v in pts])
    if min_slope is None:
        # Small practical threshold: 1 B/h, or 0.01% of the typical level per hour.
        min_slope = max(1.0, 1e-4 * level)

    usable = [s for s in seg_stats if s["slope_bytes_per_hour"] is not None]
    if latest["slope_bytes_per_hour"] is not None and latest["points"] >= MIN_POINTS:
        method = "latest_segment"
        slope = latest["_slope"]
        s, var = latest["_s"], latest["_var"]
        used = latest["points_used"]
        intercept = latest["_intercept"]
    elif usable:
        method = "pooled_segments"
        slope = stats.median([x for seg in usable for x in stats.pair_slopes(seg["_ts"], seg["_ys"])])
        s = sum(seg["_s"] for seg in usable)
        var = sum(seg["_var"] for seg in usable)
        used = sum(seg["points_used"] for seg in usable)
        # The level now: the latest segment's own robust intercept under the pooled slope.
        intercept = stats.median([v - slope * t for t, v in segs[-1]])
    else:
        raise ModelError("not enough points: need at least 3 with distinct times in one segment")

    z = stats.mk_z(s, var)
    p = stats.two_sided_p(z)
    n_used = used
    pairs = n_used * (n_used - 1) / 2.0 if method == "latest_segment" else None
    slope_h = slope * 3600.0
    t_last = pts[-1][0]
    current = max(0.0, intercept + slope * t_last)
    leak = bool(s < 0 and p < alpha and -slope_h > min_slope)
    hours = None
    if leak:
        hours = max(0.0, (current - floor) / -slope_h)

    segments = []
    for seg in seg_stats[-MAX_SEGMENTS_REPORTED:]:
        segments.append({k: v for k, v in seg.items() if not k.startswith("_")})
    return {
        "leak": leak,
        "slope_bytes_per_hour": slope_h,
        "hours_to_exhaustion": hours,
        "p_value": p,
        "z": z,
        "tau": (s / pairs) if pairs else None,
        "confidence": 1.0 - p,
        "alpha": alpha,
        "min_slope_bytes_per_hour": min_slope,
        "method": method,
        "points_used": used,
        "current_free_bytes": current,
        "segments": segments,
        "segment_count": len(segs),
        "reboots_detected": detected,
    }
