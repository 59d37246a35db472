"""Scale through ``spark-submit``: driver and Python worker memory flat, time linear in keys,
and the sensor's progress moving one bounded partition at a time.

A suite-sized version of ``make scale`` (:mod:`bench.scale`, up to a million keys, documented in
docs/TESTING.md): two manifests, 3,000 and 12,000 distinct keys served from 4,096 distinct tiny
PNGs by the bench's front server, through the real job on ``local[2]`` with moto behind it.
"""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest
from emr_inference.s3 import s3_hook
from emr_inference.staged_output import rows_done

from bench.scale import BUCKET, ScaleBench

pytestmark = pytest.mark.slow

SMALL, LARGE = 3_000, 12_000


class ProgressWatcher(threading.Thread):
    """Polls what the step sensor logs (rows of the finished partitions) while a run goes on."""

    def __init__(self, output_uri: str) -> None:
        super().__init__(daemon=True)
        self.output_uri, self.seen = output_uri, [0]
        self.done = threading.Event()

    def run(self) -> None:
        hook = s3_hook(None)
        while not self.done.wait(0.25):
            count = rows_done(hook, self.output_uri)
            if count != self.seen[-1]:
                self.seen.append(count)


def test_memory_stays_flat_time_grows_linearly_and_progress_moves(s3, tmp_path):
    watcher = ProgressWatcher(f"s3://{BUCKET}/scale-{LARGE}/")
    with ScaleBench(s3, tmp_path) as bench:
        small = bench.run(SMALL, timeout=600)
        watcher.start()
        try:
            large = bench.run(LARGE, timeout=600)
        finally:
            watcher.done.set()
            watcher.join()
    # every key exactly once (ScaleBench.run raises otherwise) in partitions of at most 5,000
    assert (small.rows, large.rows) == (SMALL, LARGE)
    assert large.partitions >= LARGE / 5000
    # the driver holds the manifest's index, never keys or rows; a worker holds a batch or two
    assert large.driver_peak_mib < small.driver_peak_mib * 1.2, (small, large)
    assert large.worker_peak_mib < small.worker_peak_mib * 1.1, (small, large)
    # four times the keys: at most ~four times the job's seconds (the small run also pays each
    # worker's model load, so its time per key is if anything higher)
    assert large.seconds_per_1000_keys < small.seconds_per_1000_keys * 1.5, (small, large)
    # progress moved before the end, one finished partition (<= LARGE / partitions keys) a step
    steps = [after - before for before, after in pairwise(watcher.seen)]
    assert 0 < watcher.seen[1] < LARGE, watcher.seen
    assert max(steps) <= 2 * -(-LARGE // large.partitions), watcher.seen  # two tasks at once
