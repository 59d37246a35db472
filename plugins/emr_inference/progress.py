"""Progress lines for the step sensors: images done / total, rate and ETA."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from emr_inference.resolved import ResolvedRequest


class ProgressLog(Protocol):
    """What :func:`log_progress` writes to: a :class:`logging.Logger` or an operator's ``log``
    (Airflow's structlog logger)."""

    def info(self, msg: str, /, *args: Any) -> Any:
        """Log an info line."""

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log a warning line."""


def describe_progress(done: int, total: int, elapsed_seconds: float) -> str:
    """``"1200/5000 images (24.0%), 40 images/s, ETA 0:01:35"`` (rate and ETA once known)."""
    percent = 100.0 * done / total if total else 100.0
    line = f"{done}/{total} images ({percent:.1f}%)"
    if done <= 0 or elapsed_seconds <= 0:
        return f"{line}, rate not known yet"
    rate = done / elapsed_seconds
    eta = dt.timedelta(seconds=round(max(total - done, 0) / rate))
    return f"{line}, {rate:.3g} images/s, ETA {eta}"


def log_progress(
    log: ProgressLog,
    aws_conn_id: str | None,
    request: ResolvedRequest,
    total: int,
    elapsed_seconds: float,
) -> None:
    """Log the progress of the run's step, counted from its staged metrics parts.

    Progress is informative: a failure to read it is a warning, never a sensor failure.
    """
    from emr_inference.s3 import s3_hook
    from emr_inference.staged_output import rows_done

    try:
        done = rows_done(s3_hook(aws_conn_id), request.job_output_uri.uri)
    except Exception as error:
        log.warning("Could not read progress from the staged output: %s", error)
        return
    log.info("Progress: %s", describe_progress(done, total, elapsed_seconds))
