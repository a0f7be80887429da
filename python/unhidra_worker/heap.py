"""heap-trend: is a device leaking memory, and when will it run out?

Input:  {"series": [[unix_seconds, free_heap_bytes], ...],
         "reboots"?: [unix_seconds, ...], "floor_bytes"?: 0,
         "min_span_minutes"?: 60, "min_points"?: 30, "z_min"?: 2.5,
         "min_slope_pct_per_hour"?: 0.5, "min_slope_bytes_per_hour"?: number}
Output: {"leak": bool, "confidence": percent, "reason": text,
         "evidence": "insufficient"|"enough", "slope_bytes_per_hour",
         "slope_pct_per_hour", "hours_to_exhaustion": number|null, "z",
         "p_value", "method", "points_used", "span_minutes",
         "current_free_bytes", "segments": [...], "reboots_detected": [...],
         "autocorrelation" (phi), "steps": [{"at", "bytes"}, ...],
         "transients_removed", "stopped_at"?: unix_seconds}

A reboot resets the heap, so the series is cut into segments at reboots (the
given ones, or, when none are given, upward jumps far beyond the noise) and
only the latest segment is judged. A leak is claimed only with enough
evidence: the segment must span min_span_minutes with min_points points.

The segment is then fitted point by point (segments over MAX_ANALYSED points
are averaged in equal time bins first) as
    free = level + slope * t + lasting steps + AR(1) noise + transients:
- transients (a buffer held for a few heartbeats, a page-cache flush) are
  points over 4 robust sigmas from the median of the 7 around them; they
  are left out (the median keeps a lasting step's edge, so steps stay);
- the noise is AR(1), u_i = phi * u_(i-1) + e_i (free memory wanders: a
  Linux host's MemAvailable keeps most of its last minute's deviation; an
  ESP32's allocation churn is nearly white, phi near 0). Gaps (missing
  points) use phi^(gap / typical gap). The fit is generalised least
  squares (Prais-Winsten), phi its restricted maximum likelihood (REML,
  less biased on short series than the residuals' autocorrelation);
- lasting steps (a process started, a fragment kept) are level shifts,
  added one at a time while the likelihood-ratio statistic of the best one
  (phi re-estimated with it) reaches STEP_LR; candidates come from a scan of
  every position under the current phi and under white noise (an unfitted
  step makes the noise look more persistent than it is, which hides it).
  A step is not a leak: the slope is what remains besides the steps.
The slope's standard error comes from the same fit, so z = -slope / SE
accounts for the wandering; a leak is z >= z_min and a loss of at least
min_slope_pct_per_hour of the median level per hour (smaller trends are not
worth an alert). A leak that has stopped (the line bends flat at the start
of the last quarter, third or half of the segment, the bend itself
significant at z_min + 1, the slope since under half the minimum) is no leak:
its alert clears without waiting for a reboot. z's normal tail is optimistic on short, wandering series
(phi is estimated from the same points, and its spread shrinks the SE too
often), so p_value and confidence are not read from it: p_value is how
often noise alone (pure AR(1) series of the same number of points whose
fitted phi is alike, run through this same fit) reaches this z, from
heapcal.py's simulated table; confidence = 100 * (1 - p_value), rounded to
0.1 and capped at 99.9 %. The decision uses z as before, so calibration
changes what is shown, never what is called a leak. With the defaults, on the synthetic fleets of fleetsim.py,
false alarms stay well under 1 % and over 95 % of leaks of exactly 1 %/h are
found within 2 hours of 60-second heartbeats (tests/test_fleet.py; figures
in docs/benchmarks.md). Cost: linear in the points (about 10 ms for 6 hours of
minute points in CPython).
"""

import math

from . import heapcal, stats
from .registry import ModelError

MAX_POINTS = 100_000
MAX_REBOOTS = 10_000
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


def _rise(pts, i):
    """How far the level after point i-1 lies above the level before it:
    the medians of up to 7 points on each side."""
    before = stats.median([v for _, v in pts[max(0, i - 7):i]])
    after = stats.median([v for _, v in pts[i:i + 7]])
    return after - before


def _split_at_jumps(pts):
    if len(pts) < 3:
        return [pts], []
    steps = [pts[i][1] - pts[i - 1][1] for i in range(1, len(pts))]
    noise = stats.MAD_TO_SIGMA * stats.mad(steps)
    level = stats.median([v for _, v in pts])
    threshold = max(JUMP_FRACTION * level, JUMP_NOISE * noise, 1.0)
    segs, cur, detected = [], [pts[0]], []
    for i in range(1, len(pts)):
        # A reboot lifts the level for good; the recovery from a dip of up
        # to 3 heartbeats does not (7-point medians outvote it; they are
        # taken only at a jump).
        if steps[i - 1] > threshold and _rise(pts, i) > threshold:
            segs.append(cur)
            cur = []
            detected.append(pts[i][0])
        cur.append(pts[i])
    segs.append(cur)
    return segs, detected


OUTLIER_WINDOW = 7  # points; a dip of up to 3 heartbeats is outvoted
OUTLIER_SIGMAS = 4.0  # a point this far from its neighbours' median is transient
MAX_ANALYSED = 720  # per segment; longer ones are averaged in consecutive bins
PHI_MAX = 0.99
PHI_GRID = (0.0, 0.3, 0.5, 0.62, 0.72, 0.8, 0.86, 0.9, 0.93, 0.955, 0.97, 0.98, PHI_MAX)
STEP_LR = 16.0  # likelihood-ratio statistic a lasting step must reach to be fitted
# A decline has stopped when the line bends flat at the start of one of these
# recent parts of the segment (each at least STOPPED_MIN_MINUTES and
# STOPPED_MIN_POINTS long): the alert of a fixed leak clears without a reboot.
STOPPED_FRACTIONS = (0.25, 1.0 / 3.0, 0.5)
STOPPED_MIN_MINUTES = 45.0
STOPPED_MIN_POINTS = 20
STOPPED_Z_EXTRA = 1.0  # the bend must reach z_min + this (it is looked for 6 ways)
MAX_STEPS = 8


def _dedupe(seg):
    """Points with distinct times (equal times averaged)."""
    ts, ys = [], []
    for t, v in seg:
        if ts and t == ts[-1]:
            k = ys[-1][1] + 1
            ys[-1] = ((ys[-1][0] * ys[-1][1] + v) / k, k)
        else:
            ts.append(t)
            ys.append((v, 1))
    return ts, [v for v, _ in ys]


def _transients(ys):
    """Indices of transient outliers: points further than OUTLIER_SIGMAS
    robust sigmas from the median of the OUTLIER_WINDOW points around them
    (a held buffer, a page-cache flush; a lasting step is not one, since
    the median keeps its edge)."""
    n, w = len(ys), OUTLIER_WINDOW
    if n < w:
        return set()
    res = []
    for i in range(n):
        lo = min(max(0, i - w // 2), n - w)
        res.append(ys[i] - sorted(ys[lo:lo + w])[w // 2])
    s = stats.MAD_TO_SIGMA * stats.mad(res)
    if s <= 0:
        return set()
    return {i for i, r in enumerate(res) if abs(r) > OUTLIER_SIGMAS * s}


def _bin(ts, ys, limit):
    """At most about limit points: the means of equal time bins, timed at
    the bins' centres (so that the gaps stay regular)."""
    if len(ts) <= limit:
        return ts, ys
    width = (ts[-1] - ts[0]) / (limit - 1)
    bins = {}
    for t, y in zip(ts, ys):
        bins.setdefault(int((t - ts[0]) / width + 0.5), []).append(y)
    keys = sorted(bins)
    return [ts[0] + k * width for k in keys], [sum(bins[k]) / len(bins[k]) for k in keys]


def _solve(a, b):
    """x with a x = b (a small symmetric positive-definite matrix), by
    Gaussian elimination; None when a is singular."""
    n = len(b)
    m = [list(a[i]) + [b[i]] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) <= 1e-12 * max(1.0, abs(a[c][c])):
            return None
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            if f:
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    x = [0.0] * n
    for c in range(n - 1, -1, -1):
        x[c] = (m[c][n] - sum(m[c][k] * x[k] for k in range(c + 1, n))) / m[c][c]
    return x


def _logdet(a):
    """log det of a small symmetric positive-definite matrix (Cholesky)."""
    n = len(a)
    l = [[0.0] * n for _ in range(n)]
    out = 0.0
    for i in range(n):
        for j in range(i + 1):
            s = a[i][j] - sum(l[i][k] * l[j][k] for k in range(j))
            if i == j:
                if s <= 0:
                    return None
                l[i][i] = math.sqrt(s)
                out += 2 * math.log(l[i][i])
            else:
                l[i][j] = s / l[j][j]
    return out


class _AR1Fit:
    """Least squares with AR(1) errors: y = X b + u, u_i = f_i u_(i-1) + e_i,
    f_i = phi^(gap_i / typical gap). The Prais-Winsten transform makes the
    errors independent; its cross-products are sums over neighbouring
    pairs, kept per column pair and per gap length, so each phi costs
    O(columns^2 * distinct gaps) and the likelihood can be maximised over
    phi cheaply."""

    def __init__(self, ts, cols, y):
        self.y, self.n = y, len(y)
        gaps = [ts[i] - ts[i - 1] for i in range(1, self.n)]
        dt0 = stats.median(gaps)
        self.ratio = [0.0] + [round(g / dt0, 3) for g in gaps]
        self.groups = {}  # gap ratio -> indices i whose gap from i-1 has it
        for i in range(1, self.n):
            self.groups.setdefault(self.ratio[i], []).append(i)
        self.cols = []
        self.sums = {}  # (j, k) -> {ratio: (same-time, crossed, lagged) sums}
        for c in cols + [y]:
            self._add(c)
        self.cols.pop()  # y is the last column of sums, not a regressor
        self.y_index = len(self.cols)

    def _pair_sums(self, c, d):
        """Per gap ratio: the sums of c*d at the same time, crossed with the
        neighbour, and at the lagged time, over the points with that gap."""
        per = {}
        for r, idx in self.groups.items():
            a = b = l = 0.0
            for i in idx:
                a += c[i] * d[i]
                b += c[i] * d[i - 1] + c[i - 1] * d[i]
                l += c[i - 1] * d[i - 1]
            per[r] = (a, b, l)
        return per

    def _add(self, c):
        j = len(self.cols)
        self.cols.append(c)
        for k, d in enumerate(self.cols):
            self.sums[(k, j)] = self.sums[(j, k)] = self._pair_sums(c, d)

    def with_column(self, c):
        """A copy with c added as the last regressor: only c's sums are
        computed (the others are shared)."""
        new = _AR1Fit.__new__(_AR1Fit)
        new.y, new.n, new.ratio, new.groups = self.y, self.n, self.ratio, self.groups
        p = self.y_index
        move = lambda j: p + 1 if j == p else j  # y moves after c
        new.sums = {(move(j), move(k)): v for (j, k), v in self.sums.items()}
        new.cols = list(self.cols)
        new.y_index = p + 1
        for k, d in enumerate(self.cols + [c, self.y]):
            kk = k if k < p else (p if k == p else p + 1)
            new.sums[(kk, p)] = new.sums[(p, kk)] = self._pair_sums(c, d)
        new.cols.append(c)
        return new

    def _f(self, phi, r):
        return min(phi ** r, PHI_MAX) if phi > 0 else 0.0

    def cross(self, phi):
        """Cross-products of the whitened columns (regressors, then y) and
        the log-determinant of the errors' correlation matrix."""
        m = self.y_index + 1
        cols = self.cols + [self.y]
        fs = {r: self._f(phi, r) for r in self.groups}
        c = [[0.0] * m for _ in range(m)]
        for j in range(m):
            for k in range(j, m):
                v = cols[j][0] * cols[k][0]
                for r, (a, b, l) in self.sums[(j, k)].items():
                    f = fs[r]
                    v += (a - f * b + f * f * l) / (1.0 - f * f)
                c[j][k] = c[k][j] = v
        logdet = sum(len(idx) * math.log(1.0 - fs[r] * fs[r]) for r, idx in self.groups.items())
        return c, logdet

    def solve(self, phi):
        """(coefficients, residual sum of squares, X'X inverse diagonal
        source, log-det) of the whitened fit at phi; None if degenerate."""
        c, logdet = self.cross(phi)
        p = self.y_index
        xx = [row[:p] for row in c[:p]]
        xy = [c[j][p] for j in range(p)]
        beta = _solve(xx, xy)
        if beta is None:
            return None
        rss = c[p][p] - sum(b * v for b, v in zip(beta, xy))
        return beta, max(rss, 0.0), xx, logdet

    def loglik(self, phi, restricted):
        """Profile log-likelihood at phi (the variance maximised out);
        restricted (REML) for estimating phi, plain for comparing models
        with different regressors."""
        s = self.solve(phi)
        if s is None:
            return -math.inf
        _, rss, xx, logdet = s
        p = self.y_index
        if rss <= 0:
            return math.inf
        if not restricted:
            return -0.5 * logdet - 0.5 * self.n * math.log(rss / self.n)
        ld = _logdet(xx)
        if ld is None:
            return -math.inf
        return -0.5 * logdet - 0.5 * ld - 0.5 * (self.n - p) * math.log(rss)

    def best_phi(self, restricted):
        """(phi, log-likelihood) maximising it: a grid, then golden-section
        search between the best point's neighbours."""
        vals = [self.loglik(f, restricted) for f in PHI_GRID]
        i = max(range(len(vals)), key=lambda k: vals[k])
        if vals[i] == math.inf:
            return 0.0, math.inf
        a, b = PHI_GRID[max(i - 1, 0)], PHI_GRID[min(i + 1, len(PHI_GRID) - 1)]
        g = (math.sqrt(5) - 1) / 2
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = self.loglik(c, restricted), self.loglik(d, restricted)
        for _ in range(10):
            if fc > fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = self.loglik(c, restricted)
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = self.loglik(d, restricted)
        best = max((vals[i], PHI_GRID[i]), (fc, c), (fd, d))
        return best[1], best[0]

    def step_scan(self, phi, taken):
        """The index where a lasting level step (a regressor 0 before, 1
        from there on) would most reduce the whitened residuals at phi,
        and that reduction over the residual variance."""
        s = self.solve(phi)
        if s is None:
            return None, 0.0
        beta, rss, xx, _ = s
        n, p = self.n, self.y_index
        if rss <= 0 or n - p < 3:
            return None, 0.0
        s2 = rss / (n - p)
        fs = [0.0] + [self._f(phi, self.ratio[i]) for i in range(1, n)]
        gs = [1.0] + [1.0 / math.sqrt(1.0 - f * f) for f in fs[1:]]
        # Whitened regressors (as columns) and residuals.
        xs = [[self.cols[k][0]] + [(self.cols[k][i] - fs[i] * self.cols[k][i - 1]) * gs[i] for i in range(1, n)]
              for k in range(p)]
        yw = [self.y[0]] + [(self.y[i] - fs[i] * self.y[i - 1]) * gs[i] for i in range(1, n)]
        r = [yw[i] - sum(beta[k] * xs[k][i] for k in range(p)) for i in range(n)]
        # An orthonormal basis of the regressors (modified Gram-Schmidt):
        # a candidate's projection on them is then the sum of p squares.
        basis = []
        for x in xs:
            v = list(x)
            for e in basis:
                d = sum(a * b for a, b in zip(v, e))
                v = [a - d * b for a, b in zip(v, e)]
            norm = math.sqrt(sum(a * a for a in v))
            if norm <= 1e-9 * math.sqrt(sum(a * a for a in x)):
                return None, 0.0
            basis.append([a / norm for a in v])
        best, where = 0.0, None
        sr, sz = 0.0, 0.0
        se = [0.0] * p
        for m in range(n - 1, 0, -1):
            # The whitened step regressor: g_m at m, (1 - f_i) g_i after it.
            a = gs[m]
            zr = a * r[m] + sr
            zz = a * a + sz
            proj = 0.0
            for k in range(p):
                q = a * basis[k][m] + se[k]
                proj += q * q
            den = zz - proj
            if m not in taken and den > 1e-9 * zz:
                stat = zr * zr / den / s2
                if stat > best:
                    best, where = stat, m
            w = (1.0 - fs[m]) * gs[m]
            sr += w * r[m]
            sz += w * w
            for k in range(p):
                se[k] += w * basis[k][m]
        return where, best


def _trend(seg):
    """The fitted trend of a segment: slope (bytes/s), the fitted level at
    its end, z of a decline, phi, the lasting steps fitted and the
    transient points left out; None when too few points remain."""
    ts, ys = _dedupe(seg)
    points = len(ts)  # what the calibration table is keyed by
    level = stats.median(ys)
    if level <= 0 or len(ts) < 4:
        return None
    drop = _transients(ys)
    ts = [t for i, t in enumerate(ts) if i not in drop]
    ys = [y for i, y in enumerate(ys) if i not in drop]
    ts, ys = _bin(ts, ys, MAX_ANALYSED)
    n = len(ts)
    if n < 6:
        return None
    t0 = ts[0]
    th = [(t - t0) / 3600.0 for t in ts]  # hours
    yp = [(y / level - 1.0) * 100.0 for y in ys]  # % of the level
    fit = _AR1Fit(th, [[1.0] * n, th], yp)
    line = fit
    steps = []
    _, base = fit.best_phi(restricted=False)
    while True:
        # phi of the current fit (after the loop, the final fit's phi).
        phi, _ = fit.best_phi(restricted=True)
        if len(steps) >= MAX_STEPS or not base < math.inf:
            break
        # Candidates from the current noise model and from white noise
        # (an unfitted step makes the noise look more persistent than it is).
        cands = {m for m, _ in (fit.step_scan(phi, set(steps)), fit.step_scan(0.0, set(steps))) if m is not None}
        best, chosen = -math.inf, None
        for m in sorted(cands):
            trial = fit.with_column([0.0] * m + [1.0] * (n - m))
            _, ll = trial.best_phi(restricted=False)
            if 2 * (ll - base) > best:
                best, chosen = 2 * (ll - base), (m, trial, ll)
        if chosen is None or best < STEP_LR:
            break
        m, fit, base = chosen
        steps.append(m)
    s = fit.solve(phi)
    if s is None:
        return None
    beta, rss, xx, _ = s
    p = fit.y_index
    b = beta[1]
    inv = _solve(xx, [0.0, 1.0] + [0.0] * (p - 2))
    var = rss / (n - p) * inv[1] if inv is not None and n > p else 0.0
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = -b / se
    elif abs(b) > 1e-9:  # an exact line (in % of the level per hour)
        z = math.inf if b < 0 else -math.inf
    else:
        z = 0.0
    end = beta[0] + b * th[-1] + sum(beta[2:])
    return {
        "slope": b * level / 100.0 / 3600.0, "end_level": level * (1.0 + end / 100.0), "z": z, "phi": phi,
        "steps": [{"at": ts[m], "bytes": beta[2 + k] * level / 100.0} for k, m in enumerate(steps)],
        "transients": len(drop), "points": points, "fits": (line, fit), "hours": th,
    }


def _stopped(tr, z_min, min_pct):
    """Whether a decline has stopped: the fitted line with a change of slope
    at the start of a recent part of the segment (STOPPED_FRACTIONS) fits
    better by a change that is itself significant (its z >= z_min +
    STOPPED_Z_EXTRA: six bends are tried), and
    the slope since then is under half the leak minimum (min_pct, % of the
    level per hour). Returns (hours from the segment's start to the bend,
    the recent slope in % per hour) or None. It can only withdraw a leak,
    never claim one, so false alarms cannot rise through it."""
    th = tr["hours"]
    n, span = len(th), th[-1] - th[0]
    best = None
    # Tried on the line alone and on the line with its steps: the step
    # search fits the end of a decline as a staircase of upward steps,
    # which leaves the bend nothing to explain. Without steps the two are
    # one fit, tried once.
    line, stepped = tr["fits"]
    fits = (line,) if stepped is line else (line, stepped)
    for fit, frac in ((f, frac) for f in fits for frac in STOPPED_FRACTIONS):
        m = next(i for i, t in enumerate(th) if t >= th[-1] - frac * span)
        if (th[-1] - th[m]) * 60.0 < STOPPED_MIN_MINUTES or n - m < STOPPED_MIN_POINTS:
            continue
        trial = fit.with_column([max(0.0, t - th[m]) for t in th])
        # phi again with the bend: left unfitted, a bend looks like
        # persistent wander, and that phi would hide the bend itself.
        phi, _ = trial.best_phi(restricted=True)
        s = trial.solve(phi)
        p = trial.y_index
        if s is None or n <= p:
            continue
        beta, rss, xx, _ = s
        inv = _solve(xx, [0.0] * (p - 1) + [1.0])
        if inv is None:
            continue
        bend, var = beta[p - 1], rss / (n - p) * inv[p - 1]
        if var > 0:
            zb = bend / math.sqrt(var)
        else:  # an exact bend
            zb = math.inf if bend > 1e-9 else 0.0
        recent = beta[1] + bend
        if zb >= z_min + STOPPED_Z_EXTRA and -recent < min_pct / 2.0 and (best is None or zb > best[0]):
            best = (zb, th[m] - th[0], recent)
    return None if best is None else best[1:]


def _ols_slope(ts, ys):
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sxx if sxx > 0 else 0.0


def _segment_stats(seg):
    out = {"start": seg[0][0], "end": seg[-1][0], "points": len(seg)}
    if len({t for t, _ in seg}) >= 2 and len(seg) >= 3:
        out["slope_bytes_per_hour"] = _ols_slope([t for t, _ in seg], [v for _, v in seg]) * 3600.0
    else:
        out["slope_bytes_per_hour"] = None
    return out


def _pct(p):
    """The confidence of a decline with p-value p, as a percentage rounded
    to 0.1 and capped at 99.9 (the calibration cannot support more)."""
    return round(min(99.9, max(0.0, 100.0 * (1.0 - p))), 1)


def _chance(p):
    """How often, in words: "in 2.8 % of cases", "in under 0.1 % of cases"."""
    if p < 0.001:
        return "in under 0.1 % of cases"
    return f"in {100 * p:.1f} % of cases"


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
        out["reason"] = ("Free memory reads 0 in most of the points; no trend to judge." if level <= 0 else
                         "Too few distinct points to judge a trend.")
        return out
    slope_h = tr["slope"] * 3600.0
    pct_h = -slope_h / level * 100.0 if level > 0 else 0.0
    current = max(0.0, tr["end_level"])
    z = tr["z"]
    p = heapcal.p_value(z, tr["points"], tr["phi"])
    leak = bool(z >= z_min and -slope_h >= min_slope)
    stopped = _stopped(tr, z_min, min_slope / level * 100.0) if leak else None
    if stopped is not None:
        leak = False
    out.update(evidence="enough", slope_bytes_per_hour=slope_h, slope_pct_per_hour=-pct_h,
               z=z if math.isfinite(z) else (1e9 if z > 0 else -1e9),
               p_value=p, confidence=_pct(p), current_free_bytes=current, method="gls_ar1_steps",
               autocorrelation=round(tr["phi"], 3), steps=tr["steps"], transients_removed=tr["transients"])
    out["leak"] = leak
    over = f"over the last {_minutes(span)} ({len(latest)} points{since})"
    aside = ""
    if tr["steps"]:
        k = len(tr["steps"])
        aside = f" (besides {k} lasting jump{'s' if k > 1 else ''} of level, not counted as the trend)"
    if stopped is not None:
        bend, recent = stopped
        out["stopped_at"] = latest[0][0] + bend * 3600.0
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}{aside}, but the decline stopped "
                         f"{_minutes(span - bend * 3600.0)} ago ({-recent:.2f} % per hour since); "
                         f"no leak now.")
    elif leak:
        out["hours_to_exhaustion"] = max(0.0, (current - floor) / -slope_h)
        out["reason"] = (f"Free memory fell steadily by {pct_h:.2f} % per hour {over}{aside}; "
                         f"a decline this steady is unlikely to be noise ({_pct(p):.1f} % confidence: noise alone, "
                         f"simulated over series of the same length and wander, is this steady "
                         f"{_chance(p)}).")
    elif pct_h <= 0:
        out["reason"] = f"Free memory did not fall {over}{aside}."
    elif -slope_h < min_slope:
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}{aside}: below the "
                         f"{min_slope / level * 100.0:.2f} % per hour judged a leak.")
    else:
        out["reason"] = (f"Free memory fell by {pct_h:.2f} % per hour {over}{aside}, but no more steadily than its "
                         f"usual wandering; not enough to call it a leak.")
    return out


def _number(inp, name, default, lo, hi):
    v = inp.get(name, default)
    if not stats.is_number(v) or not lo <= v <= hi:
        raise ModelError(f"\"{name}\" must be a number from {lo} to {hi}")
    return float(v)
