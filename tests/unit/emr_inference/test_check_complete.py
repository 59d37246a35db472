"""``check_complete`` on in-memory staged output (no S3): what it accepts, and the exact refusal."""

from __future__ import annotations

import re

import pytest
from emr_inference.publish import IncompleteOutputError, check_complete
from emr_inference.s3 import S3Uri
from emr_inference.staged_output import StagedOutput

PREFIX = S3Uri("b", "run/output/")


class InMemoryStaged(StagedOutput):
    """Staged output whose metrics parts are given, not read from S3."""

    def __init__(self, metrics: dict[int, dict], other_keys: list[str] | None = None) -> None:
        super().__init__(PREFIX)
        self._metrics = metrics
        for partition in metrics:
            self.parts[partition] = f"{PREFIX.key}part-{partition:05d}.jsonl"
            self.metrics_keys[partition] = f"{PREFIX.key}_metrics/part-{partition:05d}.json"
        self.other_keys = list(other_keys or [])

    def metrics(self, hook) -> dict[int, dict]:
        """The given metrics, by partition."""
        return dict(sorted(self._metrics.items()))


def part(first: int, end: int, **extra) -> dict:
    """A metrics part for manifest positions ``[first, end)``."""
    return {"rows": end - first, "first_index": first, "end_index": end, **extra}


def test_partitions_may_cover_the_manifest_in_any_order():
    # Coverage is checked along manifest positions, not partition numbers.
    staged = InMemoryStaged({0: part(5, 10), 1: part(0, 5)})
    assert check_complete(None, staged, 10).rows == 10


def test_a_metrics_part_without_rows_counts_none():
    staged = InMemoryStaged({0: {"first_index": 0, "end_index": 5}})
    with pytest.raises(IncompleteOutputError, match="0 rows staged, manifest total is 5"):
        check_complete(None, staged, 5)


def test_the_refusal_lists_every_problem_and_at_most_five_stray_objects():
    stray = [f"{PREFIX.key}stray-{i}" for i in range(7)]
    staged = InMemoryStaged({0: part(0, 4), 1: part(5, 9)}, other_keys=stray)
    with pytest.raises(IncompleteOutputError) as refused:
        check_complete(None, staged, 9)
    assert str(refused.value) == (
        "Refusing to publish s3://b/run/output/: "
        "partition 1 starts at manifest position 5, expected 4"
        " (a partition is missing or overlaps); "
        "8 rows staged, manifest total is 9; "
        f"unexpected objects in the staged output: {stray[:5]}. Nothing published."
    )
    assert re.search(r"stray-[56]", str(refused.value)) is None


def test_a_metrics_part_without_first_index_is_a_refusal_not_a_crash():
    staged = InMemoryStaged({0: part(0, 5), 1: {"rows": 5, "end_index": 10}})
    with pytest.raises(IncompleteOutputError, match="partition 1 starts at manifest position None"):
        check_complete(None, staged, 10)
