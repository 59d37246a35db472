"""Reading what the job staged: parts and metrics parts by partition, everything else set aside,
rows done for progress, and publication refused while stray objects are there."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from emr_inference.publish import IncompleteOutputError, check_complete
from emr_inference.s3 import s3_hook
from emr_inference.staged_output import list_staged_output, rows_done

OUT = "run/output/"
PARTS = {0: "part-00000.jsonl", 1: "part-00001.jsonl", 12345: "part-12345.jsonl"}
METRICS = {0: "_metrics/part-00000.json", 1: "_metrics/part-00001.json"}
#: Under the prefix but neither a part nor a metrics part by the contract's names.
STRAY = ["_metrics/notes.json", "notes.txt", "part-0001.jsonl", "part-00002.jsonl.tmp"]


@pytest.fixture
def staged(aws_conn, s3_env, bucket) -> str:
    """Parts, metrics parts (3 and 4 rows, partition 12345 still running), stray objects under
    the output prefix, and a part under another prefix of the same length."""
    client = s3_env.client()
    for name in PARTS.values():
        client.put_object(Bucket=bucket, Key=OUT + name, Body=b"{}\n")
    for partition, name in METRICS.items():
        metrics = {"partition": partition, "rows": 3 + partition}
        client.put_object(Bucket=bucket, Key=OUT + name, Body=json.dumps(metrics))
    for name in STRAY:
        client.put_object(Bucket=bucket, Key=OUT + name, Body=b"x")
    client.put_object(Bucket=bucket, Key="run/outpux/part-00009.jsonl", Body=b"{}\n")
    return f"s3://{bucket}/{OUT}"


def test_parts_and_metrics_parts_are_found_by_partition(aws_conn, bucket, staged):
    hook = s3_hook(aws_conn)
    listing = list_staged_output(hook, staged)
    assert listing.parts == {p: OUT + name for p, name in PARTS.items()}
    assert listing.metrics_keys == {p: OUT + name for p, name in METRICS.items()}
    assert sorted(listing.other_keys) == sorted(OUT + name for name in STRAY)
    assert set(listing.modified) == {OUT + n for n in [*PARTS.values(), *METRICS.values()]}
    assert all(isinstance(value, datetime) for value in listing.modified.values())
    assert listing.metrics(hook) == {0: {"partition": 0, "rows": 3}, 1: {"partition": 1, "rows": 4}}


def test_rows_done_sums_the_finished_partitions(aws_conn, s3_env, bucket, staged):
    assert rows_done(s3_hook(aws_conn), staged) == 3 + 4
    s3_env.client().put_object(Bucket=bucket, Key=OUT + "_metrics/part-00007.json", Body=b"{}")
    assert rows_done(s3_hook(aws_conn), staged) == 3 + 4  # a metrics part without rows adds 0


def test_an_empty_output_has_nothing_done(aws_conn, bucket):
    listing = list_staged_output(s3_hook(aws_conn), f"s3://{bucket}/nothing/")
    assert (listing.parts, listing.metrics_keys, listing.other_keys) == ({}, {}, [])
    assert rows_done(s3_hook(aws_conn), f"s3://{bucket}/nothing/") == 0


def test_stray_objects_block_publication(aws_conn, s3_env, bucket):
    client = s3_env.client()
    for partition, (first, end) in enumerate(((0, 2), (2, 5))):
        name = f"part-{partition:05d}"
        client.put_object(Bucket=bucket, Key=f"{OUT}{name}.jsonl", Body=b"")
        metrics = {"rows": end - first, "first_index": first, "end_index": end}
        client.put_object(Bucket=bucket, Key=f"{OUT}_metrics/{name}.json", Body=json.dumps(metrics))
    hook = s3_hook(aws_conn)
    assert check_complete(hook, list_staged_output(hook, f"s3://{bucket}/{OUT}"), 5).rows == 5
    client.put_object(Bucket=bucket, Key=f"{OUT}notes.txt", Body=b"x")
    with pytest.raises(IncompleteOutputError, match="unexpected objects in the staged output"):
        check_complete(hook, list_staged_output(hook, f"s3://{bucket}/{OUT}"), 5)
