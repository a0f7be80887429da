import math
import unittest

from unhidra_worker import stats


class StatsTest(unittest.TestCase):
    def test_median(self):
        self.assertEqual(stats.median([3, 1, 2]), 2.0)
        self.assertEqual(stats.median([4, 1, 3, 2]), 2.5)
        with self.assertRaises(ValueError):
            stats.median([])

    def test_mad(self):
        # |x - 10| = 0,0,1,1,0,40,0,1,1,0 -> sorted median (0+1)/2
        self.assertEqual(stats.mad([10, 10, 11, 9, 10, 50, 10, 11, 9, 10]), 0.5)

    def test_theil_sen_ignores_outlier(self):
        # Pair slopes: six 1s, then 25, 33, 49, 97: the median is 1.
        slope, intercept = stats.theil_sen([0, 1, 2, 3, 4], [0, 1, 2, 3, 100])
        self.assertEqual(slope, 1.0)
        self.assertEqual(intercept, 0.0)

    def test_theil_sen_needs_distinct_times(self):
        with self.assertRaises(ValueError):
            stats.theil_sen([5, 5, 5], [1, 2, 3])

    def test_mann_kendall_known_answer(self):
        # n=5 strictly increasing: S=10, Var=5*4*15/18, z=(10-1)/sqrt(Var).
        r = stats.mann_kendall([1, 2, 3, 4, 5])
        self.assertEqual(r["s"], 10)
        self.assertAlmostEqual(r["var"], 50 / 3)
        self.assertAlmostEqual(r["z"], 9 / math.sqrt(50 / 3))
        self.assertAlmostEqual(r["p"], 0.027486336, places=8)
        self.assertEqual(r["tau"], 1.0)

    def test_mann_kendall_tie_correction(self):
        # Values 1,2,2,3: one tie group of 2 -> Var = (4*3*13 - 2*1*9)/18 = 138/18.
        r = stats.mann_kendall([1, 2, 2, 3])
        self.assertEqual(r["s"], 5)
        self.assertAlmostEqual(r["var"], 138 / 18)

    def test_mann_kendall_no_trend(self):
        r = stats.mann_kendall([1, 1, 1, 1])
        self.assertEqual(r["z"], 0.0)
        self.assertEqual(r["p"], 1.0)

    def test_even_sample(self):
        self.assertEqual(stats.even_sample(3, 10), [0, 1, 2])
        idx = stats.even_sample(1001, 5)
        self.assertEqual(idx, [0, 250, 500, 750, 1000])

    def test_rolling_median(self):
        self.assertEqual(stats.rolling_median([1, 9, 2, 8, 3], 3), [5.0, 2.0, 8.0, 3.0, 5.5])


if __name__ == "__main__":
    unittest.main()
