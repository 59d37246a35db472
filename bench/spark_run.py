"""Run one ``spark-submit`` and measure it: wall time and the driver's peak memory.

In ``local[N]`` mode the process tree is: the JVM (``SparkSubmit``: driver and, in local mode, the
executor threads too) → the Python driver program (``main.py``) and ``pyspark.daemon``, which forks
the Python workers. The *driver part* is the JVM plus every child process that is not the daemon or
below it; its RSS is sampled with psutil while the job runs and the peak of the sum is reported.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"


@dataclass(frozen=True)
class SparkRun:
    """What one ``spark-submit`` took."""

    wall_seconds: float
    driver_peak_rss: int
    #: RSS in bytes of each driver process at the moment of the peak, by process name
    #: (``java`` is the JVM, ``python`` the driver program)
    driver_peak_parts: dict[str, int]


def driver_processes(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and its direct children except ``pyspark.daemon`` (the Python workers' parent)."""
    processes = [root]
    for child in root.children():
        try:
            if "pyspark.daemon" not in " ".join(child.cmdline()):
                processes.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return processes


def driver_rss_parts(root: psutil.Process) -> dict[str, int]:
    """RSS in bytes of :func:`driver_processes`, summed by process name."""
    parts: dict[str, int] = {}
    for process in driver_processes(root):
        try:
            name, rss = process.name(), process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            if process is root:
                raise
            continue
        parts[name] = parts.get(name, 0) + rss
    return parts


def driver_rss(root: psutil.Process) -> int:
    """Summed RSS in bytes of :func:`driver_processes`."""
    return sum(driver_rss_parts(root).values())


class _PeakSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(name="driver-rss-sampler", daemon=True)
        self._pid, self._interval = pid, interval
        self._stop_event = threading.Event()
        self.peak = 0
        self.peak_parts: dict[str, int] = {}

    def run(self) -> None:
        try:
            root = psutil.Process(self._pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.wait(self._interval):
            try:
                # spark-submit and spark-class exec the JVM: this pid becomes the driver JVM.
                parts = driver_rss_parts(root)
            except psutil.NoSuchProcess:
                return
            total = sum(parts.values())
            if total > self.peak:
                self.peak, self.peak_parts = total, parts

    def stop(self) -> tuple[int, dict[str, int]]:
        self._stop_event.set()
        self.join()
        return self.peak, self.peak_parts


def spark_submit(
    app: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    master: str = "local[2]",
    conf: Mapping[str, str] | None = None,
    py_files: Sequence[Path] = (),
    timeout: float = 900.0,
    sample_interval: float | None = None,
) -> SparkRun:
    """Run ``spark-submit --master MASTER [--conf k=v] [--py-files …] APP…``; raise on failure.

    stdout and stderr go to ``log_path``; the error names it. With ``sample_interval`` (seconds),
    the driver's RSS is sampled that often (~1 CPU-ms per sample, so throughput runs leave it off
    and report a peak of 0).
    """
    command = [str(SPARK_SUBMIT), "--master", master]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    if py_files:
        command += ["--py-files", ",".join(str(path) for path in py_files)]
    command += list(app)
    log.info("spark-submit %s (log: %s)", " ".join(command[1:]), log_path)
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT
        )
        sampler = _PeakSampler(process.pid, sample_interval) if sample_interval else None
        if sampler is not None:
            sampler.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"spark-submit timed out after {timeout:.0f}s; see {log_path}"
            ) from None
        finally:
            peak, peak_parts = sampler.stop() if sampler is not None else (0, {})
    wall = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"spark-submit exited with code {returncode}; see {log_path}")
    return SparkRun(wall_seconds=wall, driver_peak_rss=peak, driver_peak_parts=peak_parts)


def spark_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment plus ``extra``, with Spark's Python set to this interpreter."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.update(extra)
    return env


def metrics_parts(client, bucket: str, prefix: str) -> Iterator[tuple[dict, float]]:
    """Each metrics part under ``prefix`` (``…/_metrics/``) and when it was written (epoch s)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            yield json.loads(body), item["LastModified"].timestamp()


def job_seconds(parts: list[tuple[dict, float]]) -> float:
    """From the first partition's start to the last part written (the run summary's
    ``job_seconds``): the job without its driver's set-up."""
    return max(end for _, end in parts) - min(end - part["wall_seconds"] for part, end in parts)


def steady_rate(parts: list[tuple[dict, float]]) -> float:
    """Images per second of the partitions after the first one started: rows over their summed
    ``wall_seconds``. With one task slot (``local[1]``) these ran in a Python worker that had
    already imported MXNet and loaded the model, as every partition but a worker's first does on a
    cluster; the first partition also pays that one-off load (~2-3 s here)."""
    if len(parts) < 2:
        raise ValueError("a steady rate needs at least two partitions")
    starts = [end - part["wall_seconds"] for part, end in parts]
    first = starts.index(min(starts))
    rest = [part for index, (part, _) in enumerate(parts) if index != first]
    return sum(part["rows"] for part in rest) / sum(part["wall_seconds"] for part in rest)
