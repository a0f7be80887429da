"""The calibrated p-value of the heap-trend model (heapcal.py)."""

import math
import random
import unittest

from unhidra_worker import heap, heapcal, heapcal_table


def p_values(seed, count, n, phi_range):
    """(calibrated, normal) one-sided p-values of a decline on count fresh
    noise-only series."""
    rng = random.Random(seed)
    cal, nominal = [], []
    for _ in range(count):
        r = heap.analyse({"series": heapcal.noise_series(rng, n, rng.uniform(*phi_range)), "reboots": [],
                          "min_points": 8, "min_span_minutes": 5})
        cal.append(r["p_value"])
        nominal.append(heapcal.normal_tail(r["z"]))
    return cal, nominal


class CalibrationTest(unittest.TestCase):
    def test_noise_only_p_is_about_uniform(self):
        # 400 fresh series (seeds unlike the table's): the fraction with
        # p < 0.05 should be 5 %; its binomial sd is 1.1 points, so
        # [2 %, 8.5 %] is about 3 sd. Wandering 2-hour series are the
        # case the normal tail gets wrong.
        for seed, n, phis in ((101, 120, (0.8, 0.9)), (102, 120, (0.0, 0.97)), (103, 60, (0.5, 0.95))):
            cal, nominal = p_values(seed, 400, n, phis)
            frac = sum(p < 0.05 for p in cal) / len(cal)
            with self.subTest(seed=seed, n=n, phi=phis, nominal=sum(p < 0.05 for p in nominal) / len(nominal)):
                self.assertGreaterEqual(frac, 0.02)
                self.assertLessEqual(frac, 0.085)
                # p < 0.01: 1 %, sd 0.5 points; the normal tail gives
                # 2.3-4 % on these series (3.5 and 4 % fail this bound).
                self.assertLessEqual(sum(p < 0.01 for p in cal) / len(cal), 0.025)
                # And about half the series lean either way.
                self.assertAlmostEqual(sum(p < 0.5 for p in cal) / len(cal), 0.5, delta=0.1)

    def test_monotone_in_z_and_never_above_normal_confidence(self):
        zs = [x / 10 for x in range(-80, 121)]
        for n in (8, 30, 45, 120, 700, 1000, 50_000):
            for phi in (0.0, 0.2, 0.45, 0.7, 0.85, 0.95, 0.99):
                ps = [heapcal.p_value(z, n, phi) for z in zs]
                for z, a, b in zip(zs[1:], ps, ps[1:]):
                    self.assertLessEqual(b, a, f"n={n} phi={phi} z={z}")
                for z, p in zip(zs, ps):
                    self.assertTrue(0.0 <= p <= 1.0)
                    if z >= 0:
                        self.assertGreaterEqual(p, heapcal.normal_tail(z) * (1 - 1e-12))

    def test_wandering_short_series_less_confident_than_normal(self):
        # The reason calibration exists: at z 2.5 on 2 hours with phi 0.85
        # noise alone does it several times more often than 0.62 %.
        self.assertGreater(heapcal.p_value(2.5, 120, 0.85), 2 * heapcal.normal_tail(2.5))

    def test_hostile_inputs(self):
        for z, n, phi in ((math.nan, 120, 0.5), (math.inf, 120, 0.5), (-math.inf, 120, 0.5), (1e308, 120, 0.5),
                          (-1e308, 120, 0.5), (3.0, 0, 0.5), (3.0, -5, 0.5), (3.0, 10 ** 9, 0.5),
                          (3.0, 120, -3.0), (3.0, 120, 7.0), (3.0, 120, math.nan)):
            p = heapcal.p_value(z, n, phi)
            self.assertTrue(0.0 <= p <= 1.0, (z, n, phi, p))
        self.assertEqual(heapcal.p_value(math.inf, 120, 0.5), 0.0)
        self.assertEqual(heapcal.p_value(math.nan, 120, 0.5), 1.0)

    def test_table_matches_the_generator(self):
        self.assertEqual(tuple(heapcal_table.Z_GRID), heapcal.Z_GRID)
        self.assertEqual(tuple(heapcal_table.CELLS), heapcal.N_GRID)
        for n, cells in heapcal_table.CELLS.items():
            self.assertEqual(tuple(c["phi"] for c in cells), heapcal.PHI_TRUE)
            for c in cells:
                self.assertEqual(c["samples"], 2 * heapcal.SERIES, (n, c["phi"]))
                self.assertEqual(c["exceed"], sorted(c["exceed"], reverse=True))

    def test_simulation_is_seeded(self):
        self.assertEqual(heapcal._simulate((30, 0.8, 0, 3)), heapcal._simulate((30, 0.8, 0, 3)))
        self.assertNotEqual(heapcal._simulate((30, 0.8, 0, 3)), heapcal._simulate((30, 0.8, 1, 3)))

    def test_confidence_in_the_output(self):
        # A strong leak: capped at 99.9 (never "100 %"), p tiny, and the
        # reason says what the confidence is calibrated against.
        series = [[60.0 * i, 100_000.0 - 20.0 * i + 50.0 * ((i * 7) % 5)] for i in range(120)]
        r = heap.analyse({"series": series})
        self.assertTrue(r["leak"])
        self.assertEqual(r["confidence"], 99.9)
        self.assertLess(r["p_value"], 0.001)
        self.assertIn("same length and wander", r["reason"])
        self.assertEqual(r["confidence"], round(min(99.9, 100 * (1 - r["p_value"])), 1))


if __name__ == "__main__":
    unittest.main()
