"""Read what the Spark job has staged: its parts and metrics parts (names and fields:
:mod:`batch_inference.contract.formats`).

``<staging_uri>output/part-NNNNN.jsonl`` holds partition N's rows and
``<staging_uri>output/_metrics/part-NNNNN.json`` its metrics; a partition's metrics part appears
when the partition is done. The sensors use :func:`rows_done` for progress, ``publish_results``
uses :func:`read_staged_output` to check completeness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batch_inference.contract.formats import Metric, metrics_partition, part_partition

from emr_inference import s3
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


@dataclass
class StagedOutput:
    """The objects the job has written under its output prefix so far."""

    prefix: S3Uri
    #: partition number -> key of its rows part
    parts: dict[int, str] = field(default_factory=dict)
    #: partition number -> key of its metrics part
    metrics_keys: dict[int, str] = field(default_factory=dict)
    #: keys that are neither (the job writes none; reported, never published)
    other_keys: list[str] = field(default_factory=list)
    #: LastModified of every part and metrics part
    modified: dict[str, datetime] = field(default_factory=dict)

    def metrics(self, hook: S3Hook) -> dict[int, dict[str, Any]]:
        """Read every metrics part: partition number -> metrics dict."""
        return {
            partition: s3.read_json(hook, S3Uri(self.prefix.bucket, key))
            for partition, key in sorted(self.metrics_keys.items())
        }


def list_staged_output(hook: S3Hook, output_uri: str) -> StagedOutput:
    """List the parts and metrics parts under the job's output prefix."""
    prefix = S3Uri.parse(output_uri, "output", prefix=True)
    staged = StagedOutput(prefix)
    for entry in s3.iter_objects(hook, prefix):
        key = entry["Key"]
        name = key[len(prefix.key) :]
        if (partition := part_partition(name)) is not None:
            staged.parts[partition] = key
        elif (partition := metrics_partition(name)) is not None:
            staged.metrics_keys[partition] = key
        else:
            staged.other_keys.append(key)
            continue
        staged.modified[key] = entry["LastModified"]
    return staged


def rows_done(hook: S3Hook, output_uri: str) -> int:
    """Rows written by the partitions finished so far (sum of ``rows`` of the metrics parts).

    :param hook: an S3Hook for the pipeline's connection (``S3Hook(aws_conn_id)``)
    :param output_uri: the job's ``--output`` prefix
        (the request's ``job_output_uri``, :mod:`emr_inference.resolved`)
    """
    staged = list_staged_output(hook, output_uri)
    return sum(int(metrics.get(Metric.ROWS, 0)) for metrics in staged.metrics(hook).values())
