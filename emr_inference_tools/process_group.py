"""Stopping a child started with ``start_new_session=True`` together with everything it spawned.

Airflow components fork workers (uvicorn, LocalExecutor, dag-processor children); signalling the
whole process group is what makes "no process left behind" hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group led by ``process`` (if it is still running)."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def reap_group(process: subprocess.Popen, timeout: float) -> None:
    """Wait up to ``timeout`` s for ``process`` to exit, then SIGKILL what is left of its group."""
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
