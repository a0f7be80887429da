import math
import unittest

from unhidra_worker import heap
from unhidra_worker.registry import ModelError


def noisy_leak(n, start, per_hour, step=60, noise=40):
    # Deterministic pseudo-noise in [-noise, +noise].
    return [[i * step, start + per_hour * (i * step) / 3600 + ((i * 7919) % 17 - 8) * noise / 8]
            for i in range(n)]


class HeapTrendTest(unittest.TestCase):
    def test_known_answer_linear_leak(self):
        series = [[h * 3600, 1000 - 100 * h] for h in range(8)]
        r = heap.analyse({"series": series})
        self.assertTrue(r["leak"])
        self.assertEqual(r["slope_bytes_per_hour"], -100.0)
        self.assertEqual(r["hours_to_exhaustion"], 3.0)  # 300 bytes left at 100 B/h
        self.assertEqual(r["points_used"], 8)
        # S = -28, Var = 8*7*21/18, z = (-28+1)/sqrt(Var)
        self.assertAlmostEqual(r["z"], -27 / math.sqrt(8 * 7 * 21 / 18))
        self.assertAlmostEqual(r["p_value"], 0.000836627, places=8)
        self.assertEqual(r["tau"], -1.0)

    def test_noisy_leak_is_found(self):
        r = heap.analyse({"series": noisy_leak(600, 200_000, -100)})
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -100, delta=3)
        self.assertLess(r["p_value"], 1e-6)
        level = r["current_free_bytes"]
        self.assertAlmostEqual(r["hours_to_exhaustion"], level / -r["slope_bytes_per_hour"])

    def test_flat_noise_is_not_a_leak(self):
        r = heap.analyse({"series": noisy_leak(600, 200_000, 0)})
        self.assertFalse(r["leak"])
        self.assertIsNone(r["hours_to_exhaustion"])

    def test_tiny_significant_slope_below_practical_threshold(self):
        # 5 B/h over a 200 kB heap is significant but below max(1, 0.01% of level)=20 B/h.
        series = [[i * 60, 200_000 - 5 * i / 60] for i in range(600)]
        r = heap.analyse({"series": series})
        self.assertLess(r["p_value"], 0.05)
        self.assertFalse(r["leak"])
        r = heap.analyse({"series": series, "min_slope_bytes_per_hour": 1})
        self.assertTrue(r["leak"])

    def test_reboot_resets_latest_segment(self):
        before = noisy_leak(300, 200_000, -400)
        t0 = before[-1][0] + 60
        after = [[t0 + i * 60, 200_000 + ((i * 31) % 7 - 3) * 10] for i in range(300)]
        r = heap.analyse({"series": before + after, "reboots": [t0]})
        self.assertFalse(r["leak"])
        self.assertEqual(r["segment_count"], 2)
        self.assertEqual(r["method"], "latest_segment")
        self.assertLess(r["segments"][0]["slope_bytes_per_hour"], -390)

    def test_jump_detected_as_reboot_when_reboots_absent(self):
        before = noisy_leak(300, 150_000, -4000)
        t0 = before[-1][0] + 60
        after = noisy_leak(300, 150_000, -4000)
        after = [[t0 + t, v] for t, v in after]
        r = heap.analyse({"series": before + after})
        self.assertEqual(r["reboots_detected"], [t0])
        self.assertTrue(r["leak"])
        self.assertAlmostEqual(r["slope_bytes_per_hour"], -4000, delta=20)
        # Without the split the saw-tooth would look roughly flat.
        self.assertEqual(r["segment_count"], 2)

    def test_short_latest_segment_uses_pooled_estimate(self):
        a = [[h * 3600, 1000 - 100 * h] for h in range(8)]
        b = [[(10 + h) * 3600, 1000 - 100 * h] for h in range(3)]
        r = heap.analyse({"series": a + b, "reboots": [10 * 3600]})
        self.assertEqual(r["method"], "pooled_segments")
        self.assertEqual(r["slope_bytes_per_hour"], -100.0)
        self.assertTrue(r["leak"])
        # Latest level 800 bytes at 100 B/h.
        self.assertAlmostEqual(r["hours_to_exhaustion"], 8.0)

    def test_unsorted_input_is_sorted(self):
        series = [[h * 3600, 1000 - 100 * h] for h in range(8)][::-1]
        self.assertEqual(heap.analyse({"series": series})["slope_bytes_per_hour"], -100.0)

    def test_long_series_is_subsampled(self):
        r = heap.analyse({"series": noisy_leak(5000, 200_000, -50)})
        self.assertEqual(r["points_used"], heap.MAX_ANALYSED)
        self.assertTrue(r["leak"])

    def test_hostile_inputs(self):
        bad = [
            None, [], {}, {"series": []}, {"series": "x"}, {"series": [[1]]},
            {"series": [[1, float("nan")]]}, {"series": [[1, float("inf")]]},
            {"series": [[1, -5]]}, {"series": [[True, 5]]}, {"series": [[1, "5"]]},
            {"series": [[0, 1]] * (heap.MAX_POINTS + 1)},
            {"series": [[0, 1], [1, 1]], "reboots": "x"},
            {"series": [[0, 1], [1, 1]], "reboots": [0] * (heap.MAX_REBOOTS + 1)},
            {"series": [[0, 1], [1, 1], [2, 1]], "alpha": 2},
            {"series": [[0, 1], [0, 2], [0, 3]]},  # no distinct times
        ]
        for inp in bad:
            with self.subTest(inp=str(inp)[:60]):
                with self.assertRaises(ModelError):
                    heap.analyse(inp)


if __name__ == "__main__":
    unittest.main()
