"""``_run_summary.json`` from checked output, without S3: totals, defaults for metrics fields a
job did not write, the job's span from the metrics parts' times, and the rounding it promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from emr_inference.publish import CheckedOutput, replace_publication, run_summary
from emr_inference.s3 import S3Uri
from emr_inference.staged_output import StagedOutput

BASE = datetime(2026, 11, 22, tzinfo=UTC)
PREFIX = S3Uri("b", "_staging/run/output/")


def checked(metrics: dict[int, dict], written_at: dict[int, float]) -> CheckedOutput:
    """Checked output whose partition ``p`` has ``metrics[p]`` and whose two parts were last
    modified ``written_at[p]`` seconds after :data:`BASE`."""
    staged = StagedOutput(PREFIX)
    for partition, seconds in written_at.items():
        for key, target in (
            (f"{PREFIX.key}part-{partition:05d}.jsonl", staged.parts),
            (f"{PREFIX.key}_metrics/part-{partition:05d}.json", staged.metrics_keys),
        ):
            target[partition] = key
            staged.modified[key] = BASE + timedelta(seconds=seconds)
    return CheckedOutput(staged, metrics)


FULL = {
    "partition": 0, "rows": 6, "predicted": 5, "errors": 1, "first_index": 0, "end_index": 6,
    "errors_by_type": {"corrupt_image": 1}, "download_seconds": 0.0006, "decode_seconds": 0.0006,
    "inference_seconds": 2.5, "wall_seconds": 7.25,
}  # fmt: skip
#: What an older or partial job might write: no counters by type, no timings.
MINIMAL = {"partition": 1, "rows": 4, "first_index": 6, "end_index": 10}


def test_summary_adds_up_and_defaults_missing_fields_to_zero():
    # Partition 1 starts first: written at 1.0 s with no wall_seconds, so it started at 1.0 s;
    # partition 0 was written at 10.123456 s after 7.25 s of work (started at 2.873456 s).
    summary = run_summary(checked({0: FULL, 1: MINIMAL}, {0: 10.123456, 1: 1.0}), model="m")
    job_seconds = 10.123456 - 1.0
    assert summary == {
        "model": "m",
        "rows": 10,
        "predicted": 5,
        "errors": 1,
        "errors_by_type": {"corrupt_image": 1},
        "partitions": 2,
        "job_seconds": round(job_seconds, 3),
        "images_per_second": round(10 / job_seconds, 2),
        "images_per_task_second": round(10 / 7.25, 2),  # rows over the partitions' wall seconds
        "seconds_by_stage": {
            "download": round(0.0006, 3),
            "decode": round(0.0006, 3),
            "inference": 2.5,
            "wall": 7.25,
        },
        # metrics parts without them (an older job): nothing measured, MXNet fp32, engine unknown
        "worker_peak_rss_mb": None,
        "worker_peak_address_space_mb": None,
        "worker_environments": [],
        "runtime": "mxnet",
        "precision": "fp32",
        "engine": None,
        "int8_top1_agreement": None,
        "conversion_top1_agreement": None,
    }
    assert summary["job_seconds"] == 9.123 and summary["images_per_second"] == 1.1


def test_worker_environments_lists_each_distinct_environment_once():
    node = {"python": "3.9.18", "mxnet": "1.9.1", "numpy": "1.23.5"}
    other = {**node, "python": "3.11.7"}
    metrics = {
        p: {**MINIMAL, "partition": p, "worker_environment": env}
        for p, env in enumerate([node, other, dict(reversed(node.items())), None])
    }
    summary = run_summary(checked(metrics, dict.fromkeys(metrics, 1.0)))
    assert summary["worker_environments"] == [other, node]  # sorted, duplicates (any order) once


def test_the_job_span_starts_at_the_earliest_partition_start():
    summary = run_summary(checked({0: FULL, 1: MINIMAL}, {0: 10.0, 1: 9.0}))
    assert summary["job_seconds"] == pytest.approx(10.0 - (10.0 - 7.25))  # partition 0's start


@pytest.mark.parametrize(("span", "expected_rate"), [(0.5, 8.0), (0.0, None)])
def test_images_per_second_needs_a_positive_span(span, expected_rate):
    only = {**MINIMAL, "partition": 0, "wall_seconds": span}
    summary = run_summary(checked({0: only}, {0: 3.0}))
    assert summary["job_seconds"] == span
    assert summary["images_per_second"] == expected_rate


def test_an_empty_output_has_a_zero_span():
    summary = run_summary(checked({}, {}))
    assert (summary["rows"], summary["partitions"], summary["job_seconds"]) == (0, 0, 0.0)
    assert summary["images_per_second"] is None and summary["errors_by_type"] == {}
    assert summary["images_per_task_second"] is None


def test_the_measured_rate_per_task_is_what_the_estimate_models():
    """Two tasks started together, 6,000 rows in 120 s and 9,000 in 180 s: 50 images per
    task-second, while the run did 15,000 rows in 180 s (83.33 images/s, two tasks at once most
    of the time). ``estimate.images_per_task_second`` is set from the first: it does not depend
    on the cluster's task slots."""
    parts = {
        0: {**MINIMAL, "partition": 0, "rows": 6_000, "first_index": 0, "end_index": 6_000,
            "wall_seconds": 120.0},
        1: {**MINIMAL, "partition": 1, "rows": 9_000, "first_index": 6_000, "end_index": 15_000,
            "wall_seconds": 180.0},
    }  # fmt: skip
    summary = run_summary(checked(parts, {0: 120.0, 1: 180.0}))
    assert summary["images_per_task_second"] == 50.0
    assert summary["images_per_second"] == round(15_000 / 180, 2)


def test_publishing_into_the_staged_output_is_refused_naming_it():
    inside = S3Uri("b", "_staging/")
    with pytest.raises(ValueError, match="overlaps the staged output at"):
        replace_publication(None, checked({}, {}), inside, {})
