"""Small robust-statistics toolkit (pure Python, deterministic)."""

import math

# 1/Phi^-1(3/4): scales the MAD to a consistent estimate of sigma.
MAD_TO_SIGMA = 1.482602218505602


def median(xs):
    """Median of a non-empty sequence (mean of the two middle values when even)."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median of an empty sequence")
    mid = n // 2
    if n % 2:
        return float(s[mid])
    return (s[mid - 1] + s[mid]) / 2.0


def mad(xs, center=None):
    """Median absolute deviation from center (default: the median), unscaled."""
    c = median(xs) if center is None else center
    return median([abs(x - c) for x in xs])


def theil_sen(ts, ys):
    """Theil–Sen estimate: (slope, intercept).

    The slope is the median of the slopes of all pairs with distinct t; the
    intercept is the median of y - slope*t. O(n^2): callers bound n.
    """
    n = len(ts)
    if n != len(ys) or n < 2:
        raise ValueError("theil_sen needs two equally long series of at least 2 points")
    slopes = []
    for i in range(n - 1):
        ti, yi = ts[i], ys[i]
        for j in range(i + 1, n):
            dt = ts[j] - ti
            if dt != 0:
                slopes.append((ys[j] - yi) / dt)
    if not slopes:
        raise ValueError("theil_sen needs at least two distinct times")
    slope = median(slopes)
    intercept = median([y - slope * t for t, y in zip(ts, ys)])
    return slope, intercept


def pair_slopes(ts, ys):
    """All pairwise slopes with distinct t (for pooled, Sen-style estimates)."""
    out = []
    n = len(ts)
    for i in range(n - 1):
        for j in range(i + 1, n):
            dt = ts[j] - ts[i]
            if dt != 0:
                out.append((ys[j] - ys[i]) / dt)
    return out


def mk_s_and_var(ys):
    """Mann–Kendall S statistic and its variance under H0, tie-corrected.

    S = sum over i<j of sign(y_j - y_i). Var(S) = [n(n-1)(2n+5) -
    sum_g t_g(t_g-1)(2t_g+5)] / 18 where t_g is the size of each group of tied
    values.
    """
    n = len(ys)
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        for j in range(i + 1, n):
            d = ys[j] - yi
            if d > 0:
                s += 1
            elif d < 0:
                s -= 1
    counts = {}
    for y in ys:
        counts[y] = counts.get(y, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in counts.values() if t > 1)
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    return s, var


def mk_z(s, var):
    """Continuity-corrected normal score of S."""
    if var <= 0 or s == 0:
        return 0.0
    if s > 0:
        return (s - 1) / math.sqrt(var)
    return (s + 1) / math.sqrt(var)


def two_sided_p(z):
    """Two-sided p-value of a standard normal score."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def mann_kendall(ys):
    """Mann–Kendall trend test (normal approximation, tie correction).

    Returns dict(s, var, z, p, tau) with p two-sided and tau = S / (n(n-1)/2).
    """
    n = len(ys)
    if n < 3:
        raise ValueError("mann_kendall needs at least 3 points")
    s, var = mk_s_and_var(ys)
    z = mk_z(s, var)
    return {"s": s, "var": var, "z": z, "p": two_sided_p(z), "tau": s / (n * (n - 1) / 2.0)}


def even_sample(n, k):
    """k indices spread evenly over range(n), always keeping the first and last."""
    if n <= k:
        return list(range(n))
    if k < 2:
        return [n - 1]
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def rolling_median(xs, window):
    """Centred rolling median; the window shrinks at the edges. O(n*window)."""
    import bisect

    n = len(xs)
    half = window // 2
    out = []
    win = sorted(xs[0:min(n, half + 1)])
    lo, hi = 0, min(n, half + 1)  # current window is xs[lo:hi]
    for i in range(n):
        want_lo, want_hi = max(0, i - half), min(n, i + half + 1)
        while hi < want_hi:
            bisect.insort(win, xs[hi])
            hi += 1
        while lo < want_lo:
            del win[bisect.bisect_left(win, xs[lo])]
            lo += 1
        m = len(win)
        out.append(float(win[m // 2]) if m % 2 else (win[m // 2 - 1] + win[m // 2]) / 2.0)
    return out


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
