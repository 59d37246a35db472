"""CPU pinning for benchmark 2b: whole process trees, and the calling thread for a block."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.cpu_pinning import available_cpus, pin_process_tree, pinned

CPUS = sorted(available_cpus())
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs to pin apart")

# A parent that starts a thread and a child process, then waits to be killed.
_TREE = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _affinities(pid: int) -> dict[int, set[int]]:
    return {
        int(task.name): os.sched_getaffinity(int(task.name))
        for task in Path(f"/proc/{pid}/task").iterdir()
    }


@needs_two_cpus
def test_pin_process_tree_pins_every_thread_of_every_descendant() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert len(_affinities(parent.pid)) >= 2  # main thread + the sleeping thread
        assert set(_affinities(parent.pid)[parent.pid]) == set(CPUS)

        count = pin_process_tree(parent.pid, {CPUS[-1]})

        threads = {**_affinities(parent.pid), **_affinities(child_pid)}
        assert count == len(threads)
        assert all(cpus == {CPUS[-1]} for cpus in threads.values()), threads
        pin_process_tree(parent.pid, set(CPUS))
        assert all(cpus == set(CPUS) for cpus in _affinities(child_pid).values())
    finally:
        parent.kill()
        parent.wait()


@needs_two_cpus
def test_pinned_is_inherited_by_what_the_block_starts_and_restored_after() -> None:
    seen: dict[str, set[int]] = {}

    def record() -> None:
        seen["thread"] = os.sched_getaffinity(0)

    with pinned({CPUS[0]}):
        assert os.sched_getaffinity(0) == {CPUS[0]}
        thread = threading.Thread(target=record)
        thread.start()
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True,
            text=True,
            check=True,
        )
    thread.join()
    assert seen["thread"] == {CPUS[0]}
    assert child.stdout.strip() == str([CPUS[0]])
    assert os.sched_getaffinity(0) == set(CPUS)


def test_an_empty_cpu_set_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one CPU"):
        pin_process_tree(os.getpid(), set())
    with pytest.raises(ValueError, match="at least one CPU"), pinned(set()):
        pass
