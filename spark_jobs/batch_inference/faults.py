"""Test-only fault injection for the job's reliability tests; inert unless the variable is set.

``BATCH_INFERENCE_TEST_FAULT`` (read in the Python worker at each injection point) is one of:

* ``exit:K`` — partition ``K``'s first attempt kills its Python worker (``os._exit``) right after
  writing its rows part and before its metrics part: a worker death mid-partition. Spark retries
  the task when ``spark.task.maxFailures`` allows (``local[N,F]`` or a cluster).
* ``fail:K`` — every partition ``>= K`` raises :class:`InjectedFault` before doing any work, on
  every attempt: a systemic failure that fails the job after the partitions below ``K`` are written.

Production runs never set it; each injection point costs one environment lookup per partition.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

FAULT_ENV = "BATCH_INFERENCE_TEST_FAULT"

#: Where :func:`inject` is called: before a partition's work, and between its two writes.
AT_START = "start"
AFTER_ROWS_PART = "after_rows_part"

EXIT_CODE = 17


class InjectedFault(RuntimeError):
    """The failure ``fail:K`` asks for."""


def inject(point: str, partition: int) -> None:
    """Apply the fault that ``BATCH_INFERENCE_TEST_FAULT`` names, if it targets this point and
    partition."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    action, _, target = spec.partition(":")
    if action not in ("exit", "fail") or not target.isdigit():
        raise ValueError(f"{FAULT_ENV} must be exit:K or fail:K, got {spec!r}")
    if action == "exit" and point == AFTER_ROWS_PART and partition == int(target):
        if _attempt() == 0:
            log.warning(
                "partition %d: %s=%s, killing this Python worker", partition, FAULT_ENV, spec
            )
            logging.shutdown()
            os._exit(EXIT_CODE)
    elif action == "fail" and point == AT_START and partition >= int(target):
        raise InjectedFault(f"partition {partition}: injected failure ({FAULT_ENV}={spec})")


def _attempt() -> int:
    """The Spark task attempt number (0 outside Spark)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.attemptNumber() if context else 0
