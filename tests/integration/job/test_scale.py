"""Scale through ``spark-submit``: driver and Python worker memory flat, time linear in keys.

A suite-sized version of ``make scale`` (:mod:`bench.scale`, up to a million keys, documented in
docs/TESTING.md): two manifests, 3,000 and 12,000 distinct keys served from 4,096 distinct tiny
PNGs by the bench's front server, through the real job on ``local[2]`` with moto behind it.
"""

from __future__ import annotations

import pytest

from bench.scale import ScaleBench

pytestmark = pytest.mark.slow

SMALL, LARGE = 3_000, 12_000


def test_memory_stays_flat_and_time_grows_linearly_with_the_keys(s3, tmp_path):
    with ScaleBench(s3, tmp_path) as bench:
        small, large = bench.run(SMALL, timeout=600), bench.run(LARGE, timeout=600)
    # every key exactly once (ScaleBench.run raises otherwise) in partitions of at most 5,000
    assert (small.rows, large.rows) == (SMALL, LARGE)
    assert large.partitions >= LARGE / 5000
    # the driver holds the manifest's index, never keys or rows; a worker holds a batch or two
    assert large.driver_peak_mib < small.driver_peak_mib * 1.2, (small, large)
    assert large.worker_peak_mib < small.worker_peak_mib * 1.1, (small, large)
    # four times the keys: at most ~four times the job's seconds (the small run also pays each
    # worker's model load, so its time per key is if anything higher)
    assert large.seconds_per_1000_keys < small.seconds_per_1000_keys * 1.5, (small, large)
