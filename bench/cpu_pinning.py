"""Pin processes and threads to CPUs, so one benchmark can give the job cores S3 does not use.

On EMR the S3 service costs the cluster's nodes no CPU; here the S3 emulator and the latency proxy
share the machine with the job. Pinning them to one core and the job to the others measures the
job's own efficiency as it would run on EMR. Linux only (``sched_setaffinity``).

An affinity set with ``sched_setaffinity`` belongs to one thread and is inherited by the threads
and processes that thread creates afterwards, so:

* :func:`pin_process_tree` pins every thread of a running process and of its descendants;
* :func:`pinned` pins the calling thread for a ``with`` block: what it starts there (a proxy's
  serving thread, a ``spark-submit``) keeps that affinity after the block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


def available_cpus() -> set[int]:
    """The CPUs this thread may run on."""
    return set(os.sched_getaffinity(0))


def _threads(pid: int) -> list[int]:
    try:
        return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:  # the process has exited
        return []


def pin_process_tree(pid: int, cpus: set[int]) -> int:
    """Restrict every thread of ``pid`` and of its descendants to ``cpus``; returns the count.

    Threads that exit meanwhile are skipped; threads created later inherit the affinity of the
    thread that creates them, i.e. ``cpus``.
    """
    if not cpus:
        raise ValueError("cpus must name at least one CPU")
    root = psutil.Process(pid)
    pinned = 0
    for process in [root, *root.children(recursive=True)]:
        for tid in _threads(process.pid):
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                continue
            pinned += 1
    return pinned


@contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run the block with the calling thread restricted to ``cpus``; restore it afterwards."""
    if not cpus:
        raise ValueError("cpus must name at least one CPU")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
