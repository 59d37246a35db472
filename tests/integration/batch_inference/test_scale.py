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
#: Partitions sized in time, as the job derives them: 20 images per task-second x 100 s = at most
#: 2,000 keys, so the large run has 6 partitions on local[2] (2 x 2 would hold 3,000 keys each).
RATE, SECONDS, BOUND = 20, 100, 2_000
SIZED = ["--images-per-task-second", str(RATE), "--partition-seconds", str(SECONDS)]


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
        small = bench.run(SMALL, timeout=600, job_args=SIZED)
        watcher.start()
        try:
            large = bench.run(LARGE, timeout=600, job_args=SIZED)
        finally:
            watcher.done.set()
            watcher.join()
    # every key exactly once (ScaleBench.run raises otherwise) in partitions of at most BOUND
    # keys: the bound the job derived from the rate and the partition seconds, and logged
    assert (small.rows, large.rows) == (SMALL, LARGE)
    assert (small.partitions, large.partitions) == (4, 6)  # the small run: 2 x defaultParallelism
    driver_log = (tmp_path / f"scale-{LARGE}.log").read_text()
    assert (
        f"in 6 partitions of at most {BOUND} keys (derived: {RATE} images per task-second x "
        f"{SECONDS} s, at least 100)" in driver_log
    )
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
