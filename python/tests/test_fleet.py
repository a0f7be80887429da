"""The heap-trend model on seeded synthetic fleets (fleetsim.py).

The short form runs with the unit tests. The full measurement of
docs/benchmarks.md (1,000 stable series judged at 2, 4 and 6 hours; 1,000
leaking series judged at 2 hours) runs with UNHIDRA_HEAP_FLEET=full
(`make bench-heap`), and prints its figures.
"""

import os
import unittest

from unhidra_worker import fleetsim, heap

FULL = os.environ.get("UNHIDRA_HEAP_FLEET") == "full"


def judge(series, hours):
    """The model's verdict on the first `hours` of a series, given as the
    server gives it (reboots known: none)."""
    end = series[0][0] + hours * 3600
    return heap.analyse({"series": [p for p in series if p[0] <= end], "reboots": []})["leak"]


def measure(count, seed, stable_checks, leak_range):
    stable = fleetsim.fleet(seed, count, max(stable_checks))
    false_alarms = {"esp32": 0, "linux": 0}
    for kind, _, s in stable:
        if any(judge(s, h) for h in stable_checks):
            false_alarms[kind] += 1
    leaking = fleetsim.fleet(seed + 1, count, 2, leak_range=leak_range)
    found = {"esp32": 0, "linux": 0}
    for kind, _, s in leaking:
        if judge(s, 2):
            found[kind] += 1
    return false_alarms, found


class FleetTest(unittest.TestCase):
    def test_false_alarms_and_detection(self):
        count = 1000 if FULL else 300
        checks = (2, 4, 6) if FULL else (2,)
        fa, found = measure(count, 20261207, checks, (1.0, 3.0))
        fp_rate = sum(fa.values()) / count
        det_rate = sum(found.values()) / count
        if FULL:
            print(f"\nheap-trend fleet: {count} stable series (judged at {checks} h): "
                  f"{sum(fa.values())} false alarms ({100 * fp_rate:.1f} %; ESP32-like {fa['esp32']}, "
                  f"Linux-like {fa['linux']}); {count} leaking series (1-3 %/h, judged at 2 h): "
                  f"{sum(found.values())} found ({100 * det_rate:.1f} %; ESP32-like {found['esp32']}, "
                  f"Linux-like {found['linux']})")
        self.assertLessEqual(fp_rate, 0.01)
        self.assertGreaterEqual(det_rate, 0.95)

    def test_weakest_leak(self):
        # Exactly 1 %/h, the weakest leak that must be found.
        count = 1000 if FULL else 200
        _, found = measure(count, 7, (2,), (1.0, 1.0))
        rate = sum(found.values()) / count
        if FULL:
            print(f"\nheap-trend fleet: {count} series leaking exactly 1 %/h, judged at 2 h: "
                  f"{sum(found.values())} found ({100 * rate:.1f} %; ESP32-like {found['esp32']}, "
                  f"Linux-like {found['linux']})")
        self.assertGreaterEqual(rate, 0.90)

    def test_seeded(self):
        self.assertEqual(fleetsim.fleet(3, 4, 1), fleetsim.fleet(3, 4, 1))
        self.assertNotEqual(fleetsim.fleet(3, 4, 1), fleetsim.fleet(4, 4, 1))


if __name__ == "__main__":
    unittest.main()
