import unittest

from unhidra_worker import anomaly
from unhidra_worker.registry import ModelError


def pts(values):
    return [[i, v] for i, v in enumerate(values)]


class AnomalyTest(unittest.TestCase):
    def test_known_answer(self):
        # median 10, MAD 0.5: z(50) = 0.6745*40/0.5 = 53.96, z(11) = 1.349.
        r = anomaly.detect({"points": pts([10, 10, 11, 9, 10, 50, 10, 11, 9, 10])})
        self.assertEqual(r["count"], 1)
        a = r["anomalies"][0]
        self.assertEqual((a["index"], a["ts"], a["value"], a["direction"]), (5, 5, 50.0, "high"))
        self.assertAlmostEqual(a["score"], 53.96, places=6)

    def test_low_outlier_and_threshold(self):
        r = anomaly.detect({"points": pts([10, 10, 11, 9, 10, 7, 10, 11, 9, 10])})
        # z(7) = 0.6745*3/0.5 = 4.047 > 3.5
        self.assertEqual([a["direction"] for a in r["anomalies"]], ["low"])
        r = anomaly.detect({"points": pts([10, 10, 11, 9, 10, 7, 10, 11, 9, 10]), "threshold": 5})
        self.assertEqual(r["count"], 0)

    def test_zero_mad_falls_back_to_mean_absolute_deviation(self):
        r = anomaly.detect({"points": pts([5, 5, 5, 5, 5, 5, 9])})
        self.assertEqual([a["index"] for a in r["anomalies"]], [6])
        self.assertIn("meanad", r["method"])
        self.assertEqual(anomaly.detect({"points": pts([5, 5, 5])})["count"], 0)

    def test_rolling_window_ignores_drift(self):
        # A steady ramp with one spike: globally the ramp ends look extreme
        # to nobody, but residuals from a rolling median isolate the spike.
        values = [i * 10.0 for i in range(50)]
        values[25] += 100
        r = anomaly.detect({"points": pts(values), "window": 5})
        self.assertEqual([a["index"] for a in r["anomalies"]], [25])

    def test_named_metrics(self):
        r = anomaly.detect({"metrics": {"temp": pts([20, 21, 20, 95, 21, 20, 20]),
                                        "rssi": pts([-60, -61, -60, -59, -60, -61, -60])}})
        self.assertEqual(r["count"], 1)
        self.assertEqual(r["metrics"]["temp"]["anomalies"][0]["index"], 3)
        self.assertEqual(r["metrics"]["rssi"]["count"], 0)

    def test_deterministic(self):
        inp = {"points": pts([(i * 37) % 11 for i in range(200)] + [99])}
        self.assertEqual(anomaly.detect(inp), anomaly.detect(inp))

    def test_hostile_inputs(self):
        bad = [None, {}, {"points": []}, {"points": [[1, None]]}, {"points": [[1, float("nan")]]},
               {"points": [[0, 1]] * (anomaly.MAX_POINTS + 1)}, {"points": pts([1, 2]), "window": 4},
               {"points": pts([1, 2]), "window": 5000}, {"points": pts([1, 2]), "threshold": -1},
               {"metrics": {}}, {"metrics": {str(i): pts([1]) for i in range(anomaly.MAX_METRICS + 1)}},
               {"metrics": {"": pts([1])}}, {"metrics": {"x" * 200: pts([1])}}]
        for inp in bad:
            with self.subTest(inp=str(inp)[:60]):
                with self.assertRaises(ModelError):
                    anomaly.detect(inp)


if __name__ == "__main__":
    unittest.main()
