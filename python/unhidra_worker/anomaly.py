"""telemetry-anomaly: flag outlying readings with robust statistics.

Input:  {"points": [[ts, value], ...]}  or  {"metrics": {"name": [[ts, value], ...], ...}}
        optional "threshold" (default 3.5, Iglewicz & Hoaglin) and "window"
        (odd, >= 3: score residuals from a centred rolling median, so slow
        drifts and daily cycles are not flagged; 0 or absent: score the values).
Output: for "points": {"anomalies": [{"index", "ts", "value", "score", "direction"}],
        "count", "n", "center", "scale", "threshold", "method"};
        for "metrics": {"metrics": {"name": <same object>}, "count": total}.

The score is the modified z-score 0.6745 * (x - median) / MAD. When more than
half the values are equal the MAD is 0; the mean absolute deviation (scaled by
1.2533 so both estimate sigma for normal data) takes its place, and when that
is 0 too every value is identical and nothing is anomalous.
"""

from . import stats
from .registry import ModelError

MAX_POINTS = 100_000  # per metric
MAX_TOTAL = 200_000
MAX_METRICS = 100
MAX_WINDOW = 1001
MAX_NAME = 128
DEFAULT_THRESHOLD = 3.5
Z_CONST = 0.6745
MEANAD_CONST = 1.2533


def _points(raw, where):
    if not isinstance(raw, list) or not raw:
        raise ModelError(f"{where} must be a non-empty array of [ts, value]")
    if len(raw) > MAX_POINTS:
        raise ModelError(f"{where} has {len(raw)} points; the limit is {MAX_POINTS}")
    out = []
    for i, p in enumerate(raw):
        if not (isinstance(p, list) and len(p) == 2 and stats.is_number(p[0]) and stats.is_number(p[1])):
            raise ModelError(f"{where}[{i}] must be [ts, value] with finite numbers")
        out.append((p[0], float(p[1])))
    # Time order matters for the rolling window; sorted() is stable for equal ts.
    return sorted(out, key=lambda p: p[0])


def score(pts, threshold, window):
    values = [v for _, v in pts]
    if window:
        base = stats.rolling_median(values, window)
        resid = [v - b for v, b in zip(values, base)]
        method = f"rolling_median_residual(window={window})"
    else:
        resid = values
        method = "median_mad"
    center = stats.median(resid)
    dev = [abs(r - center) for r in resid]
    mad = stats.median(dev)
    if mad > 0:
        scale = mad / Z_CONST  # sigma estimate: score = 0.6745 * d / MAD
        method += "+mad"
    else:
        mean_ad = sum(dev) / len(dev)
        scale = MEANAD_CONST * mean_ad
        method += "+meanad"
    anomalies = []
    if scale > 0:
        for i, ((ts, v), r) in enumerate(zip(pts, resid)):
            z = (r - center) / scale
            if abs(z) > threshold:
                anomalies.append({"index": i, "ts": ts, "value": v, "score": round(z, 6),
                                  "direction": "high" if z > 0 else "low"})
    return {"anomalies": anomalies, "count": len(anomalies), "n": len(pts), "center": center,
            "scale": scale, "threshold": threshold, "method": method}


def detect(inp):
    if not isinstance(inp, dict):
        raise ModelError("input must be an object with \"points\" or \"metrics\"")
    threshold = inp.get("threshold", DEFAULT_THRESHOLD)
    if not stats.is_number(threshold) or not 0 < threshold <= 1e6:
        raise ModelError("\"threshold\" must be a positive number")
    window = inp.get("window", 0) or 0
    if not isinstance(window, int) or isinstance(window, bool) or window < 0 or window > MAX_WINDOW:
        raise ModelError(f"\"window\" must be an integer between 0 and {MAX_WINDOW}")
    if window and (window < 3 or window % 2 == 0):
        raise ModelError("\"window\" must be odd and at least 3")
    if "points" in inp:
        return score(_points(inp["points"], "\"points\""), float(threshold), window)
    metrics = inp.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ModelError("input needs \"points\" or a non-empty \"metrics\" object")
    if len(metrics) > MAX_METRICS:
        raise ModelError(f"at most {MAX_METRICS} metrics per request")
    total = sum(len(v) for v in metrics.values() if isinstance(v, list))
    if total > MAX_TOTAL:
        raise ModelError(f"{total} points in all; the limit is {MAX_TOTAL}")
    out, count = {}, 0
    for name in sorted(metrics):
        if not name or len(name) > MAX_NAME:
            raise ModelError(f"metric names must be 1..{MAX_NAME} characters")
        r = score(_points(metrics[name], f"metrics[{name!r}]"), float(threshold), window)
        out[name] = r
        count += r["count"]
    return {"metrics": out, "count": count}
