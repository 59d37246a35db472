"""The job's logs: where the driver's and the executors' Python log lines go."""

from __future__ import annotations

import logging
import sys


def configure_logging() -> None:
    """INFO logs of this package to stderr, whatever the root logger's configuration.

    On the driver, spark-submit merges the Python process's stderr into its own stdout (the EMR
    step's stdout log); on executors it lands in the executor's stderr log.
    """
    logger = logging.getLogger("batch_inference")
    if not any(getattr(handler, "_batch_inference", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._batch_inference = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
