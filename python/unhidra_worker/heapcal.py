"""heapcal: how often noise alone gives the heap-trend model a z this large.

heap.py's z = -slope / SE comes from a GLS fit with AR(1) noise whose phi
is estimated from the same short series. phi's spread makes the standard
error too small too often, so the normal tail of z is optimistic: on
noise-only series of 2 hours with phi 0.8-0.9, z >= 2.5 happens in about
3 % of series, not the normal 0.62 %. The confidence heap.py shows is
therefore calibrated against simulated noise-only series instead:

    p_value(z, n, phi) = the fraction of pure AR(1) series of n points
    with this phi, run through the same fit (steps and transients
    included), whose z is at least z

(a parametric bootstrap: the fitted phi stands in for the true one, read
against the phi the simulated series fit to on average). The
fractions come from a table (heapcal_table.py) that this module generates
(`cd python && python3 -m unhidra_worker.heapcal`; `... heapcal check`
prints how well it is calibrated on fresh series): for each length in
N_GRID and each phi in PHI_TRUE, SERIES series of 60-second points
(generator seed SEED), counting |z| >= each of Z_GRID (the fit is
symmetric in sign, so both tails count and each series gives two samples).
At call time the table is interpolated: linearly in log n between lengths
(clamped to N_GRID's ends: longer segments use the 1000 row; heap.py
bins any over 720 points, as it did for the table's 1000), linearly in phi between the cells' mean fitted phi, and in log p
between the z grid. Beyond the last z with at least MIN_COUNT exceedances,
the tail is extrapolated as a normal tail with the scale that matches it
there. The result is never below the plain normal tail (calibration only
ever lowers the confidence). Per call: a table lookup (a few microseconds).
"""

import math
import random
import statistics
import sys

N_GRID = (30, 60, 120, 240, 480, 1000)
PHI_TRUE = (0.0, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95)  # the simulated noises' phi
Z_GRID = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
SEED = 20261207
SERIES = 1000  # per length and phi
MIN_COUNT = 5  # exceedances for a tabulated tail to be trusted
_NORMAL = statistics.NormalDist()


def normal_tail(z):
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def _cell_tails(cell):
    """[(z, p)] of a table cell: the trusted tabulated tails, then a normal
    tail scaled to match the last one (the extrapolation)."""
    samples, counts = cell["samples"], cell["exceed"]
    pts = [(0.0, 0.5)]
    for z, c in zip(Z_GRID, counts):
        if c < MIN_COUNT:
            break
        pts.append((z, c / samples))
    z_last, p_last = pts[-1]
    # The scale s with normal_tail(z_last / s) = p_last (s >= 1: never
    # lighter than the normal tail).
    s = max(1.0, z_last / -_NORMAL.inv_cdf(p_last)) if z_last > 0 else 1.0
    return pts, s


def _cell_p(tails, z):
    pts, s = tails
    if z >= pts[-1][0]:
        return normal_tail(z / s) if pts[-1][0] > 0 else normal_tail(z)
    for (z0, p0), (z1, p1) in zip(pts, pts[1:]):
        if z <= z1:
            w = (z - z0) / (z1 - z0)
            return math.exp((1 - w) * math.log(p0) + w * math.log(p1))
    return pts[-1][1]  # not reached


_TABLE = None


def _table():
    """{n: [(mean fitted phi, tails)]}, built once from heapcal_table."""
    global _TABLE
    if _TABLE is None:
        from . import heapcal_table
        # Keyed by the mean fitted phi, not the true one: phi fitted on a
        # short series is biased low (0.82 on average for 30 points of
        # phi 0.95), and such a series must be read against that noise.
        _TABLE = {n: [(c["phi_fitted_mean"], _cell_tails(c)) for c in cells if c["samples"] > 0]
                  for n, cells in heapcal_table.CELLS.items()}
    return _TABLE


def _weights(grid, x):
    """[(index, weight)]: linear interpolation of x on a sorted grid,
    clamped at its ends."""
    if x <= grid[0]:
        return [(0, 1.0)]
    if x >= grid[-1]:
        return [(len(grid) - 1, 1.0)]
    for i in range(1, len(grid)):
        if x <= grid[i]:
            w = (x - grid[i - 1]) / (grid[i] - grid[i - 1])
            return [(i - 1, 1 - w), (i, w)]
    return [(len(grid) - 1, 1.0)]  # not reached


def _upper_tail(z, n, phi):
    """Calibrated P(Z >= z) for z >= 0."""
    table = _table()
    logp = 0.0
    for i, wn in _weights([math.log(m) for m in N_GRID], math.log(max(n, 1))):
        cells = table[N_GRID[i]]
        for j, wp in _weights([c[0] for c in cells], phi):
            logp += wn * wp * math.log(max(_cell_p(cells[j][1], z), 1e-300))
    return max(math.exp(logp), normal_tail(z))


def p_value(z, n, phi):
    """The calibrated one-sided p-value of a decline with this z, fitted on
    n points with this phi: how often noise alone reaches z."""
    if z != z:  # NaN
        return 1.0
    if z == math.inf:
        return 0.0
    if z == -math.inf:
        return 1.0
    if z >= 0:
        return _upper_tail(z, n, phi)
    return 1.0 - _upper_tail(-z, n, phi)


# --- generation -----------------------------------------------------------

def noise_series(rng, n, phi):
    """n points, 60 s apart, of pure stationary AR(1) noise around 200,000
    (sd 0.45 % of the level; z does not depend on it)."""
    level, sd = 200_000.0, 900.0
    u = rng.gauss(0, sd)
    innov = sd * math.sqrt(1 - phi * phi)
    series = []
    for i in range(n):
        series.append([60.0 * i, level + u])
        u = phi * u + rng.gauss(0, innov)
    return series


def check(count=600, seed=4242):
    """Prints, on fresh noise-only series, the share with p < 0.05 and
    p < 0.01 by the normal tail and calibrated (docs/benchmarks.md)."""
    from . import heap
    print(f"{count} noise-only series per row, seeds from {seed}: % with p < 0.05 / p < 0.01, normal -> calibrated")
    for n in (60, 120, 240, 360):
        for lo, hi in ((0.0, 0.0), (0.5, 0.5), (0.8, 0.8), (0.9, 0.9), (0.0, 0.95)):
            rng = random.Random(seed)
            seed += 1
            nominal, cal = [], []
            for _ in range(count):
                r = heap.analyse({"series": noise_series(rng, n, rng.uniform(lo, hi)), "reboots": [],
                                  "min_points": 8, "min_span_minutes": 5})
                nominal.append(normal_tail(r["z"]))
                cal.append(r["p_value"])
            share = lambda ps: " / ".join(f"{100 * sum(p < a for p in ps) / count:.1f}" for a in (0.05, 0.01))
            print(f"n {n:4d}, phi {lo}-{hi}: {share(nominal)} -> {share(cal)}", flush=True)


def _simulate(job):
    """(n, phi, z of count noise-only series of n points with this phi)."""
    from . import heap
    n, phi, chunk, count = job
    rng = random.Random(SEED * 1_000_003 + n * 1009 + int(phi * 1000) * 7919 + chunk)
    out = []
    for _ in range(count):
        tr = heap._trend(noise_series(rng, n, phi))
        if tr is not None and math.isfinite(tr["z"]):
            out.append((tr["phi"], tr["z"]))
    return n, phi, out


def generate(series=SERIES, processes=2, chunks=4):
    """The table cells, {n: [cell per PHI_TRUE]}, from fresh simulations."""
    import multiprocessing
    jobs = [(n, phi, c, series // chunks) for n in N_GRID for phi in PHI_TRUE for c in range(chunks)]
    results = {(n, phi): [] for n in N_GRID for phi in PHI_TRUE}
    with multiprocessing.Pool(processes) as pool:
        for n, phi, out in pool.imap(_simulate, jobs):  # ordered: the result does not depend on scheduling
            results[(n, phi)].extend(out)
    cells = {}
    for (n, phi), fits in results.items():
        cells.setdefault(n, []).append(cell(phi, fits))
    return cells


def cell(phi, fits):
    """The table cell of the (fitted phi, z) pairs simulated with this phi."""
    zs = [abs(z) for _, z in fits]
    return {
        "phi": phi, "phi_fitted_mean": round(sum(f for f, _ in fits) / len(fits), 4),
        "samples": 2 * len(zs), "exceed": [sum(1 for a in zs if a >= g) for g in Z_GRID],
    }


def main():
    if sys.argv[1:] == ["check"]:
        check()
        return
    cells = generate()
    lines = [
        '"""Generated by `cd python && python3 -m unhidra_worker.heapcal` (heapcal.py); do not edit.',
        "",
        f"Noise-only AR(1) series: {SERIES} per length and phi, generator seed {SEED},",
        "run through heap._trend. Per cell: samples (two per series: both tails)",
        "and how many have |z| >= each of Z_GRID.",
        '"""',
        "",
        f"Z_GRID = {Z_GRID!r}",
        "CELLS = {",
    ]
    for n, cs in cells.items():
        lines.append(f"    {n}: [")
        for c in cs:
            lines.append(f"        {c!r},")
        lines.append("    ],")
    lines.append("}")
    path = __file__.replace("heapcal.py", "heapcal_table.py")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
