"""The formats both sides share (batch_inference.contract.formats): manifest, parts, metrics."""

from __future__ import annotations

import pytest
from batch_inference.contract.formats import (
    ManifestDocument,
    ManifestError,
    Metric,
    Shard,
    check_manifest,
    images_per_task_second,
    metrics_name,
    metrics_partition,
    part_name,
    part_partition,
    shard_name,
)
from batch_inference.output import PartitionMetrics


def test_a_written_manifest_document_reads_back_as_itself():
    doc = ManifestDocument(5, (Shard("s3://b/m/" + shard_name(0), 5),), "s3://b/in/")
    assert doc.as_json() == {
        "version": 1,
        "total": 5,
        "source": "s3://b/in/",
        "shards": [{"uri": "s3://b/m/shard-00000.txt", "count": 5}],
    }
    assert check_manifest("s3://b/m/manifest.json", doc.as_json()) == doc


def test_a_manifest_error_is_a_value_error_naming_the_manifest():
    with pytest.raises(
        ValueError, match="manifest s3://b/x.json: field 'version' must be 1, got 2"
    ):
        check_manifest("s3://b/x.json", {"version": 2})
    assert issubclass(ManifestError, ValueError)


@pytest.mark.parametrize("partition", [0, 7, 12345, 100000])
def test_part_names_read_back_as_their_partition(partition):
    assert part_partition(part_name(partition)) == partition
    assert metrics_partition(metrics_name(partition)) == partition
    assert part_partition(metrics_name(partition)) is None
    assert metrics_partition(part_name(partition)) is None


@pytest.mark.parametrize(
    "name",
    ["part-0001.jsonl", "part-00001.json", "part-00001.jsonl.tmp", "_metrics/part-00001.jsonl",
     "_metrics/other.json", "x/part-00001.jsonl", "notes.txt"],
)  # fmt: skip
def test_other_names_are_no_part(name):
    assert part_partition(name) is None and metrics_partition(name) is None


def test_the_jobs_metrics_part_has_exactly_the_contracts_fields():
    metrics = PartitionMetrics(partition=0, first_index=0, end_index=0, fingerprint="f").as_dict()
    assert list(metrics) == list(Metric)


def test_images_per_task_second_over_short_partitions_and_parts_without_rows():
    """Rows over task seconds, however short the partitions; a part that reports no rows adds
    its seconds and no rows; no seconds at all is no rate."""
    assert images_per_task_second([{"rows": 10, "wall_seconds": 0.5}]) == 20.0
    parts = [{"rows": 10, "wall_seconds": 4.0}, {"rows": None, "wall_seconds": 1.0}, {}]
    assert images_per_task_second(parts) == 2.0
    assert images_per_task_second([{"rows": 10, "wall_seconds": 0.0}]) is None
