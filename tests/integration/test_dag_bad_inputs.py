"""Bad input at scale through the whole demo DAG: 2,000 objects, 10% of them bad in every way the
job knows (emr_inference_tools.demo.images.BAD_INPUTS), with ``sse: aws:kms`` and a key id.

Every listed key comes back exactly once, as a prediction or as an error row of the expected type;
the run summary counts the errors by type. The "missing" objects exist when ``stage_manifest``
lists the prefix and are deleted right after (as when a producer removes a file mid-run), so the
job finds them missing. Every object the pipeline wrote carries the KMS encryption.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from emr_inference_tools.demo.images import DemoObject, demo_objects
from tests.integration.conftest import INPUT_PREFIX, OUTPUT_PREFIX, stage_demo_run, task_states

pytestmark = pytest.mark.slow

IMAGES = 2000
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/h6-demo-key"


def test_two_thousand_objects_ten_percent_bad(demo_dag, bucket, s3_env, digits_model):
    client = s3_env.client()
    objects = demo_objects(IMAGES, bad_fraction=0.1)
    missing = [obj.name for obj in objects if obj.body is None]
    placeholders = [
        DemoObject(obj.name, b"deleted after listing", None, None) if obj.body is None else obj
        for obj in objects
    ]
    conf = stage_demo_run(
        client, bucket, digits_model, placeholders,
        batch_size=64, partitions=4, max_error_rate=0.15,
        sse={"mode": "aws:kms", "kms_key_id": KMS_KEY},
    )  # fmt: skip

    def delete_missing(context) -> None:
        for name in missing:
            client.delete_object(Bucket=bucket, Key=f"{INPUT_PREFIX}/{name}")

    demo_dag.get_task("stage_manifest").on_success_callback = [delete_missing]
    run = demo_dag.test(logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.UTC), run_conf=conf)
    assert run.state == "success", task_states(run)

    rows = []
    listing = client.list_objects_v2(Bucket=bucket, Prefix=OUTPUT_PREFIX)["Contents"]
    for key in sorted(item["Key"] for item in listing if item["Key"].endswith(".jsonl")):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines()]
    keys = [row["key"] for row in rows]
    assert sorted(keys) == sorted(f"s3://{bucket}/{INPUT_PREFIX}/{obj.name}" for obj in objects)
    expected = {f"s3://{bucket}/{INPUT_PREFIX}/{obj.name}": obj.expected_error for obj in objects}
    wrong = {
        row["key"]: (row["error"], expected[row["key"]])
        for row in rows
        if (row["error"] or {}).get("type") != expected[row["key"]]
        or bool(row["top_k"]) == bool(row["error"])
    }
    assert wrong == {}

    bad = Counter(obj.expected_error for obj in objects if obj.expected_error)
    assert sum(bad.values()) == IMAGES // 10 and len(bad) == 6  # 7 kinds, 6 error types
    summary_key = OUTPUT_PREFIX + "_run_summary.json"
    summary = json.loads(client.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert summary["rows"] == IMAGES
    assert summary["predicted"] == IMAGES - sum(bad.values())
    assert summary["errors_by_type"] == dict(bad)
    assert summary["partitions"] == 4

    written = [
        item["Key"]
        for prefix in ("artifacts/", "_staging/", OUTPUT_PREFIX)
        for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ]
    encryption = Counter(
        (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"))
        for head in (client.head_object(Bucket=bucket, Key=key) for key in written)
    )
    assert encryption == {("aws:kms", KMS_KEY): len(written)}
