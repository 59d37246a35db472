"""Exceptions of the job: per-image errors (become error rows) and systemic ones (fail the job)."""

from __future__ import annotations

from batch_inference.contract import formats

# Error types of an error row (docs/CONTRACTS.md, "Staged output").
MISSING_OBJECT = "missing_object"
EMPTY_OBJECT = "empty_object"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
UNSUPPORTED_IMAGE = "unsupported_image"
DECOMPRESSION_BOMB = "decompression_bomb"
DOWNLOAD_FAILED = "download_failed"

ERROR_TYPES = (
    MISSING_OBJECT,
    EMPTY_OBJECT,
    CORRUPT_IMAGE,
    TRUNCATED_IMAGE,
    UNSUPPORTED_IMAGE,
    DECOMPRESSION_BOMB,
    DOWNLOAD_FAILED,
)


class ImageError(Exception):
    """One input could not be turned into a tensor; it becomes an error row, never a failed job."""

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error type {error_type!r}")
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The row's ``error`` object."""
        return {"type": self.error_type, "message": self.message}


class SystemicError(Exception):
    """An error that no retry of a single image can fix: the job must fail and say why.

    The driver recognises these by class name in the Python traceback Spark hands back from a
    failed task (see :func:`batch_inference.job.systemic_cause`), so subclasses keep their names.
    """


class ModelLoadError(SystemicError):
    """The model's symbol, params or labels cannot be downloaded, verified or loaded."""


#: The key manifest is missing, malformed or inconsistent: the contract's error, shared with the
#: Airflow side (systemic for the job all the same: the driver finds it by its name).
ManifestError = formats.ManifestError


class OutputWriteError(SystemicError):
    """A partition's output part or metrics part could not be written."""


class WorkerLimitError(SystemicError):
    """The Python worker hit an operating-system limit (its threads' stacks under the address-space
    limit of ``spark.executor.pyspark.memory``): every partition of the job would."""


class JobFailed(Exception):
    """Raised on the driver: the run must exit non-zero with this message."""
