"""Publish a run's staged output to its final prefix, all or nothing for readers of ``_SUCCESS``.

1. :func:`check_complete` refuses output with a missing part or metrics part, partitions that do
   not cover the manifest exactly, or a row count other than the manifest's total.
2. :func:`replace_publication` deletes ``_SUCCESS`` first (readers stop trusting the prefix),
   copies the parts into place, deletes the objects of the earlier publication (and only those:
   :mod:`emr_inference.ownership`) that are not part of this one, then writes
   ``_run_summary.json`` (listing this publication's objects) and, last, ``_SUCCESS``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batch_inference.contract.formats import STAGE_SECONDS, Metric, images_per_task_second

from emr_inference import s3
from emr_inference.ownership import (
    PUBLISHED_OBJECTS,
    SUCCESS_NAME,
    SUMMARY_NAME,
    is_owned,
    overlaps,
    owned_names,
    read_summary,
)
from emr_inference.s3 import S3Uri
from emr_inference.staged_output import StagedOutput

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)


class IncompleteOutputError(RuntimeError):
    """The staged output is not a complete result of the manifest; nothing was published."""


@dataclass(frozen=True)
class CheckedOutput:
    """Staged output that passed :func:`check_complete`, with its metrics."""

    staged: StagedOutput
    metrics: dict[int, dict[str, Any]]

    @property
    def rows(self) -> int:
        """Rows over all partitions."""
        return sum(m[Metric.ROWS] for m in self.metrics.values())

    @property
    def errors(self) -> int:
        """Error rows over all partitions."""
        return sum(m.get(Metric.ERRORS, 0) for m in self.metrics.values())


def check_complete(hook: S3Hook, staged: StagedOutput, total: int) -> CheckedOutput:
    """Raise :class:`IncompleteOutputError` unless ``staged`` holds every row of the manifest."""
    problems = []
    if missing := sorted(set(staged.metrics_keys) - set(staged.parts)):
        problems.append(f"partitions {missing} have a metrics part but no part-NNNNN.jsonl")
    if missing := sorted(set(staged.parts) - set(staged.metrics_keys)):
        problems.append(f"partitions {missing} have a part but no _metrics/part-NNNNN.json")
    metrics = staged.metrics(hook)
    position = 0
    by_start = sorted(metrics.items(), key=lambda item: item[1].get(Metric.FIRST_INDEX, 0))
    for partition, m in by_start:
        first, end = m.get(Metric.FIRST_INDEX), m.get(Metric.END_INDEX)
        if first != position:
            problems.append(
                f"partition {partition} starts at manifest position {first}, expected {position}"
                " (a partition is missing or overlaps)"
            )
        if isinstance(end, int):
            position = end
    if position != total:
        problems.append(f"partitions cover manifest positions [0, {position}), expected {total}")
    rows = sum(int(m.get(Metric.ROWS, 0)) for m in metrics.values())
    if rows != total:
        problems.append(f"{rows} rows staged, manifest total is {total}")
    if staged.other_keys:
        problems.append(f"unexpected objects in the staged output: {staged.other_keys[:5]}")
    if problems:
        raise IncompleteOutputError(
            f"Refusing to publish {staged.prefix}: " + "; ".join(problems) + ". Nothing published."
        )
    return CheckedOutput(staged, metrics)


def check_disjoint(output: S3Uri, others: dict[str, S3Uri]) -> None:
    """Refuse an ``output_uri`` that overlaps another prefix of the run (input, staging, ...).

    Publishing deletes every object under ``output_uri`` that it did not write; an output prefix
    containing (or inside) the input or the staging area would destroy them.
    """
    for name, other in others.items():
        if overlaps(output, other):
            raise ValueError(f"output_uri: {output} overlaps the {name} at {other}")


def run_summary(checked: CheckedOutput, **context: Any) -> dict[str, Any]:
    """The ``_run_summary.json`` document: counts, errors by type, throughput, plus ``context``.

    ``job_seconds`` spans from the earliest partition start (its metrics part's LastModified minus
    its ``wall_seconds``) to the last part written: the time the cluster spent on inference.
    ``images_per_task_second`` is the rows over the sum of the partitions' ``wall_seconds``: the
    measured rate of one task, which the pipeline's ``estimate.images_per_task_second`` models.
    """
    metrics = checked.metrics.values()
    errors_by_type: Counter[str] = Counter()
    for m in metrics:
        errors_by_type.update(m.get(Metric.ERRORS_BY_TYPE, {}))
    modified = checked.staged.modified
    starts = [
        modified[checked.staged.metrics_keys[p]].timestamp() - m.get(Metric.WALL_SECONDS, 0.0)
        for p, m in checked.metrics.items()
    ]
    job_seconds = max(t.timestamp() for t in modified.values()) - min(starts) if starts else 0.0
    return {
        **context,
        "rows": checked.rows,
        "predicted": sum(m.get(Metric.PREDICTED, 0) for m in metrics),
        "errors": checked.errors,
        "errors_by_type": dict(sorted(errors_by_type.items())),
        "partitions": len(checked.metrics),
        "job_seconds": round(job_seconds, 3),
        "images_per_second": round(checked.rows / job_seconds, 2) if job_seconds > 0 else None,
        # rows / the partitions' task seconds: what estimate.images_per_task_second should be
        "images_per_task_second": images_per_task_second(metrics),
        "seconds_by_stage": {
            stage.removesuffix("_seconds"): round(sum(m.get(stage, 0.0) for m in metrics), 3)
            for stage in STAGE_SECONDS
        },
        # the largest Python worker, to compare with model.worker_memory_mb (docs/SIZING.md)
        "worker_peak_rss_mb": _largest(metrics, Metric.WORKER_PEAK_RSS_MB),
        "worker_peak_address_space_mb": _largest(metrics, Metric.WORKER_PEAK_ADDRESS_SPACE_MB),
        # what the Python workers ran on, as they reported it (one entry per distinct environment)
        "worker_environments": worker_environments(metrics),
        # what produced the rows: each a value, or "a/b" when a resumed run mixed two
        "runtime": _distinct(metrics, Metric.RUNTIME, "mxnet"),
        "precision": _distinct(metrics, Metric.PRECISION, "fp32"),
        "engine": _distinct(metrics, Metric.ENGINE, None),
        "int8_top1_agreement": _first(metrics, Metric.INT8_TOP1_AGREEMENT),
        "conversion_top1_agreement": _first(metrics, Metric.CONVERSION_TOP1_AGREEMENT),
    }


def _distinct(
    metrics: Iterable[Mapping[str, Any]], field: Metric, default: str | None
) -> str | None:
    """The metrics' distinct values of ``field`` joined with "/" (``default`` for a part written
    before the field existed); ``None`` when there is none."""
    values = {m.get(field, default) for m in metrics} - {None}
    return "/".join(sorted(values)) or None


def _first(metrics: Iterable[Mapping[str, Any]], field: Metric) -> Any:
    """The first set value of ``field`` among the metrics, else ``None``."""
    return next((m[field] for m in metrics if m.get(field) is not None), None)


def worker_environments(metrics: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The distinct ``worker_environment`` objects of the metrics parts, in a stable order."""
    distinct = {
        json.dumps(m[Metric.WORKER_ENVIRONMENT], sort_keys=True)
        for m in metrics
        if m.get(Metric.WORKER_ENVIRONMENT)
    }
    return [json.loads(text) for text in sorted(distinct)]


def _largest(metrics: Any, name: str) -> int | None:
    values = [m[name] for m in metrics if m.get(name) is not None]
    return max(values) if values else None


def replace_publication(
    hook: S3Hook, checked: CheckedOutput, output: S3Uri, summary: dict[str, Any]
) -> S3Uri:
    """Make ``output`` hold the checked parts, ``_run_summary.json`` and ``_SUCCESS`` in place of
    its previous publication, and touch nothing else under it.

    Deletes only what the previous publication owned (:mod:`emr_inference.ownership`: what its
    summary lists, and the contract's names) and this one does not write; the summary lists this
    publication's objects (``published_objects``), the next one's to replace. Returns the
    summary's URI. ``output`` must not contain the staged output.
    """
    check_disjoint(output, {"staged output": checked.staged.prefix})
    success, summary_uri = output.join(SUCCESS_NAME), output.join(SUMMARY_NAME)
    previous = read_summary(hook, output)
    s3.delete(hook, output.bucket, [success.key])
    source_prefix = checked.staged.prefix.key
    sources = sorted([*checked.staged.parts.values(), *checked.staged.metrics_keys.values()])
    published = {SUCCESS_NAME, SUMMARY_NAME}
    for key in sources:
        relative = key[len(source_prefix) :]
        s3.copy(hook, S3Uri(checked.staged.prefix.bucket, key), output.join(relative))
        published.add(relative)
    listed = owned_names(previous)
    stale = [
        entry["Key"]
        for entry in s3.iter_objects(hook, output)
        if (relative := entry["Key"][len(output.key) :]) not in published
        and is_owned(relative, listed)
    ]
    s3.delete(hook, output.bucket, stale)
    log.info(
        "Published %d objects to %s, removed %d of its previous publication", len(sources),
        output, len(stale),
    )  # fmt: skip
    s3.write_json(hook, summary_uri, {**summary, PUBLISHED_OBJECTS: sorted(published)})
    s3.write_bytes(hook, success, b"")
    return summary_uri
