import math
import random
import unittest

from unhidra_worker import heap
from unhidra_worker.registry import ModelError


def noisy_leak(n, start, per_hour, step=60, noise=40):
    # Deterministic pseudo-noise in [-noise, +noise].
    return [[i * step, start + per_hour * (i * step) / 3600 + ((i * 7919) % 17 - 8) * noise / 8]
            for i in range(n)]


class HeapTrendTest(unittest.TestCase):
    def test_known_answer_linear_leak(self):
        # 2 h of minute points falling exactly 1,000 B/h from 100 kB (1 %/h).
        series = [[i * 60, 100_000 - 1000 * i / 60] for i in range(121)]
        r = heap.analyse({"series": series})
        self.assertTrue(r["leak"])
        self.assertEqual(r["evidence"], "enough")
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -1000.0, places=6)
        self.assertAlmostEqual(r["slope_pct_per_hour"], -1000 / 99_000 * 100, places=6)
        # 98 kB left at 1 kB/h.
        self.assertAlmostEqual(r["hours_to_exhaustion"], 98.0, places=6)
        self.assertEqual(r["confidence"], 99.9)
        self.assertIn("fell steadily by 1.01 % per hour over the last 2.0 h (121 points)", r["reason"])

    def test_noisy_leak_is_found(self):
        r = heap.analyse({"series": noisy_leak(600, 200_000, -2000)})
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -2000, delta=150)  # within 7.5 %
        self.assertGreater(r["confidence"], 99)
        self.assertAlmostEqual(r["hours_to_exhaustion"], r["current_free_bytes"] / -r["slope_bytes_per_hour"])

    def test_a_leak_that_stopped_is_no_longer_a_leak(self):
        # 2 h falling 1 %/h of 200 kB, then flat: once the flat part is a
        # quarter to a half of the segment, the leak is withdrawn.
        leak = noisy_leak(121, 200_000, -2000)
        end = leak[-1][1]
        for flat_minutes, want_leak in ((10, True), (60, False), (120, False)):
            flat = [[leak[-1][0] + 60 * (i + 1), end + ((i * 7919) % 17 - 8) * 40 / 8] for i in range(flat_minutes)]
            r = heap.analyse({"series": leak + flat})
            self.assertEqual(r["leak"], want_leak, (flat_minutes, r["reason"]))
            if not want_leak:
                self.assertIn("the decline stopped", r["reason"])
                self.assertIsNone(r["hours_to_exhaustion"])
                self.assertAlmostEqual(r["stopped_at"], leak[-1][0], delta=40 * 60)
        # The same length of a leak that goes on stays a leak.
        r = heap.analyse({"series": noisy_leak(241, 200_000, -2000)})
        self.assertTrue(r["leak"])
        self.assertNotIn("stopped_at", r)

    def test_flat_noise_is_not_a_leak(self):
        r = heap.analyse({"series": noisy_leak(600, 200_000, 0)})
        self.assertFalse(r["leak"])
        self.assertIsNone(r["hours_to_exhaustion"])
        self.assertIsInstance(r["confidence"], float)
        self.assertLessEqual(r["confidence"], 99.9)

    def test_not_enough_evidence(self):
        # 7 one-minute points of a steep fall: not judged (the old model
        # called this a leak).
        series = [[i * 60, 200_000 - 3000 * i] for i in range(7)]
        r = heap.analyse({"series": series})
        self.assertFalse(r["leak"])
        self.assertEqual(r["evidence"], "insufficient")
        self.assertEqual(r["confidence"], 0.0)
        self.assertEqual(r["reason"], "Not enough data to judge: 6 min and 7 points; "
                                      "a leak is judged after 60 min and 30 points.")
        # The thresholds are inputs.
        long_enough = [[i * 60, 200_000 - 3000 * i] for i in range(31)]
        self.assertEqual(heap.analyse({"series": long_enough})["evidence"], "insufficient")
        r = heap.analyse({"series": long_enough, "min_span_minutes": 30, "min_points": 20})
        self.assertEqual(r["evidence"], "enough")
        self.assertTrue(r["leak"])

    def test_slope_below_practical_threshold(self):
        # 0.1 %/h is steady but below the 0.5 %/h judged a leak.
        series = [[i * 60, 200_000 - 200 * i / 60] for i in range(600)]
        r = heap.analyse({"series": series})
        self.assertFalse(r["leak"])
        self.assertIn("below the 0.50 % per hour judged a leak", r["reason"])
        r = heap.analyse({"series": series, "min_slope_pct_per_hour": 0.05})
        self.assertTrue(r["leak"])

    def test_one_step_down_is_not_a_leak(self):
        # Flat, then a process takes 5 % for good: a step, not a trend.
        series = [[i * 60, (200_000 if i < 60 else 190_000) + ((i * 7919) % 17 - 8) * 50] for i in range(121)]
        r = heap.analyse({"series": series})
        self.assertFalse(r["leak"], r["reason"])

    def test_reboot_resets_latest_segment(self):
        before = noisy_leak(300, 200_000, -4000)
        t0 = before[-1][0] + 60
        after = [[t0 + i * 60, 200_000 + ((i * 31) % 7 - 3) * 10] for i in range(300)]
        r = heap.analyse({"series": before + after, "reboots": [t0]})
        self.assertFalse(r["leak"])
        self.assertEqual(r["segment_count"], 2)
        self.assertLess(r["segments"][0]["slope_bytes_per_hour"], -3900)
        # A segment too short since the reboot is not judged.
        r = heap.analyse({"series": before + after[:20], "reboots": [t0]})
        self.assertEqual(r["evidence"], "insufficient")
        self.assertIn("since the last reboot", r["reason"])

    def test_jump_detected_as_reboot_when_reboots_absent(self):
        before = noisy_leak(300, 150_000, -4000)
        t0 = before[-1][0] + 60
        after = [[t0 + t, v] for t, v in noisy_leak(300, 150_000, -4000)]
        r = heap.analyse({"series": before + after})
        self.assertEqual(r["reboots_detected"], [t0])
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -4000, delta=200)  # within 5 %
        self.assertEqual(r["segment_count"], 2)
        # A one-point dip and its recovery is no reboot.
        spiky = noisy_leak(120, 150_000, 0)
        spiky[50][1] -= 20_000
        self.assertEqual(heap.analyse({"series": spiky})["reboots_detected"], [])
        # Nor is a dip of 3 heartbeats.
        spiky[60][1] -= 20_000
        spiky[61][1] -= 20_000
        spiky[62][1] -= 20_000
        self.assertEqual(heap.analyse({"series": spiky})["reboots_detected"], [])

    def test_unsorted_input_is_sorted(self):
        series = [[i * 60, 100_000 - 1000 * i / 60] for i in range(121)]
        self.assertAlmostEqual(heap.analyse({"series": series[::-1]})["slope_bytes_per_hour"], -1000.0, places=6)

    def test_long_series(self):
        r = heap.analyse({"series": noisy_leak(2880, 200_000, -2000)})
        self.assertTrue(r["leak"])
        self.assertEqual(r["points_used"], 2880)

    def test_whitened_sums_match_the_direct_transform(self):
        # The per-gap sums give the same cross-products as transforming
        # every point (Prais-Winsten), gaps included.
        rng = random.Random(5)
        ts = [i * 60.0 for i in range(50) if i not in (7, 20, 21, 33)]
        ys = [rng.gauss(0, 1) for _ in ts]
        cols = [[1.0] * len(ts), [t / 3600 for t in ts]]
        fit = heap._AR1Fit(ts, cols, ys)
        for phi in (0.0, 0.5, 0.9):
            got, logdet = fit.cross(phi)
            rows, want_logdet = [], 0.0
            for i in range(len(ts)):
                if i == 0:
                    rows.append([c[0] for c in cols] + [ys[0]])
                    continue
                f = phi ** ((ts[i] - ts[i - 1]) / 60.0)
                g = 1 / math.sqrt(1 - f * f)
                want_logdet += math.log(1 - f * f)
                rows.append([(c[i] - f * c[i - 1]) * g for c in cols] + [(ys[i] - f * ys[i - 1]) * g])
            for j in range(3):
                for k in range(3):
                    self.assertAlmostEqual(got[j][k], sum(r[j] * r[k] for r in rows), places=8)
            self.assertAlmostEqual(logdet, want_logdet, places=10)

    def test_white_noise_gives_ordinary_least_squares(self):
        # With phi = 0 the slope and its standard error are the textbook ones.
        rng = random.Random(9)
        ts = [i / 60 for i in range(121)]
        ys = [5 - 0.5 * t + rng.gauss(0, 0.3) for t in ts]
        beta, rss, xx, _ = heap._AR1Fit(ts, [[1.0] * 121, ts], ys).solve(0.0)
        mt, my = sum(ts) / 121, sum(ys) / 121
        sxx = sum((t - mt) ** 2 for t in ts)
        b = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sxx
        self.assertAlmostEqual(beta[1], b, places=10)
        res = [y - my - b * (t - mt) for t, y in zip(ts, ys)]
        self.assertAlmostEqual(rss, sum(r * r for r in res), places=8)

    def test_wandering_memory_is_not_a_leak_but_a_leak_in_it_is(self):
        # AR(1) wander like a Linux host's MemAvailable (phi 0.85, sd 0.4 %),
        # 2 h of minute points: no leak; the same with 3 %/h lost: a leak.
        for seed in range(5):
            with self.subTest(seed=seed):
                rng = random.Random(seed)
                level, phi, sd = 4e9, 0.85, 0.004 * 4e9
                ar, noise = rng.gauss(0, sd), []
                for _ in range(121):
                    ar = phi * ar + rng.gauss(0, sd * math.sqrt(1 - phi * phi))
                    noise.append(ar)
                flat = [[i * 60, level + noise[i]] for i in range(121)]
                r = heap.analyse({"series": flat, "reboots": []})
                self.assertFalse(r["leak"], r["reason"])
                self.assertGreater(r["autocorrelation"], 0.5)
                leaking = [[i * 60, level * (1 - 0.03 * i / 60) + noise[i]] for i in range(121)]
                r = heap.analyse({"series": leaking, "reboots": []})
                self.assertTrue(r["leak"], r["reason"])
                self.assertAlmostEqual(r["slope_pct_per_hour"], -3.0, delta=1.0)

    def test_lasting_step_is_fitted_not_taken_for_the_trend(self):
        rng = random.Random(3)
        # A leak of 1 %/h with a lasting 1 % jump up at minute 70 (a buffer
        # freed): still a leak at the right rate, the jump reported.
        s = [[i * 60, 200_000 * (1 - 0.01 * i / 60 + (0.01 if i >= 70 else 0)) + rng.gauss(0, 400)]
             for i in range(121)]
        r = heap.analyse({"series": s})
        self.assertTrue(r["leak"], r["reason"])
        self.assertAlmostEqual(r["slope_pct_per_hour"], -1.0, delta=0.2)
        self.assertEqual([st["at"] for st in r["steps"]], [70 * 60])
        self.assertAlmostEqual(r["steps"][0]["bytes"], 2000, delta=400)
        self.assertIn("besides 1 lasting jump of level", r["reason"])
        # Flat with a lasting 1 % drop: the drop is a step, not a leak.
        s = [[i * 60, 200_000 * (1 - (0.01 if i >= 50 else 0)) + rng.gauss(0, 400)] for i in range(121)]
        r = heap.analyse({"series": s})
        self.assertFalse(r["leak"], r["reason"])
        self.assertEqual(len(r["steps"]), 1)
        self.assertLess(r["steps"][0]["bytes"], 0)

    def test_transient_dips_are_left_out(self):
        # A leak of 1 %/h with a 5 % dip every 15 minutes for 2 heartbeats.
        s = [[i * 60, 200_000 * (1 - 0.01 * i / 60) - (10_000 if i % 15 in (3, 4) else 0)
              + ((i * 7919) % 17 - 8) * 40] for i in range(121)]
        r = heap.analyse({"series": s})
        self.assertTrue(r["leak"], r["reason"])
        self.assertEqual(r["transients_removed"], 16)
        self.assertAlmostEqual(r["slope_pct_per_hour"], -1.0, delta=0.05)

    def test_gaps_and_long_segments(self):
        # 20 minutes missing: the fit uses the real times.
        s = [p for p in noisy_leak(121, 200_000, -2000) if not 40 <= p[0] / 60 < 60]
        r = heap.analyse({"series": s})
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -2000, delta=150)
        # Two days of minute points are averaged into at most MAX_ANALYSED bins.
        r = heap.analyse({"series": noisy_leak(2880, 200_000, -500), "min_slope_pct_per_hour": 0.1})
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -500, delta=25)
        ts, _ = heap._bin([float(i) for i in range(2880)], [0.0] * 2880, heap.MAX_ANALYSED)
        self.assertLessEqual(len(ts), heap.MAX_ANALYSED)

    def test_hostile_inputs(self):
        bad = [
            None, [], {}, {"series": []}, {"series": "x"}, {"series": [[1]]},
            {"series": [[1, float("nan")]]}, {"series": [[1, float("inf")]]},
            {"series": [[1, -5]]}, {"series": [[True, 5]]}, {"series": [[1, "5"]]},
            {"series": [[0, 1]] * (heap.MAX_POINTS + 1)},
            {"series": [[0, 1], [1, 1]], "reboots": "x"},
            {"series": [[0, 1], [1, 1]], "reboots": [0] * (heap.MAX_REBOOTS + 1)},
            {"series": [[0, 1], [1, 1], [2, 1]], "alpha": 2},
            {"series": [[0, 1], [1, 1], [2, 1]], "min_points": 0},
            {"series": [[0, 1], [1, 1], [2, 1]], "z_min": "3"},
            {"series": [[0, 1], [1, 1], [2, 1]], "min_span_minutes": float("nan")},
        ]
        for inp in bad:
            with self.subTest(inp=str(inp)[:60]):
                with self.assertRaises(ModelError):
                    heap.analyse(inp)
        # No distinct times: an answer, not a claim.
        r = heap.analyse({"series": [[0, 1], [0, 2], [0, 3]], "min_span_minutes": 1})
        self.assertFalse(r["leak"])
        # Degenerate but valid series: answers, no claims, finite figures.
        for name, s in [("flat", [[i * 60, 1000] for i in range(121)]),
                        ("zero", [[i * 60, 0] for i in range(121)]),
                        ("two levels", [[i * 60, 1000 if i < 60 else 900] for i in range(121)]),
                        ("huge", [[i * 60, 1e300] for i in range(121)])]:
            with self.subTest(series=name):
                r = heap.analyse({"series": s})
                self.assertFalse(r["leak"], r["reason"])
                self.assertIn(r["z"], (None, 0.0))
        self.assertIn("reads 0", heap.analyse({"series": [[i * 60, 0] for i in range(121)]})["reason"])


if __name__ == "__main__":
    unittest.main()
