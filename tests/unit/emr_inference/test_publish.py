"""publish_results: refuses incomplete output, replaces the previous publication, _SUCCESS last."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from emr_inference import s3
from emr_inference.operators.publish import DEFAULT_ASSET_ALIAS, PublishResultsOperator
from emr_inference.plan import plan_run
from emr_inference.publish import IncompleteOutputError
from emr_inference.resolved import ResolvedRequest

from tests.unit.emr_inference.pipeline_fixtures import date_request

TOTAL = 10
PREDICTIONS = Asset(name="demo.predictions", uri="s3://bucket/predictions/")


def _request(bucket: str) -> dict:
    return date_request(
        dag_id="demo",
        run_id="manual__2026-11-22",
        pipeline="demo",
        backend="local",
        input_uri=f"s3://{bucket}/images/",
        manifest_uri=None,
        output_uri=f"s3://{bucket}/predictions/dt=2026-11-22/",
        staging_uri=f"s3://{bucket}/_staging/demo/run/",
        model={"name": "digits"},
        sse={"mode": "AES256", "kms_key_id": None},
        partition_date="2026-11-22",
        request_fingerprint="f" * 64,
        local={"workers": 1, "worker_cores": 2},
        estimate={
            "images_per_task_second": 5.0,
            "cluster_start_seconds": 20,
            "step_start_seconds": 9,
        },
    )


def _stage(s3_env, bucket: str, ranges=((0, 6), (6, 10)), errors: int = 1) -> None:
    """Write the job's staged output: one part and one metrics part per (first, end) range."""
    client = s3_env.client()
    for partition, (first, end) in enumerate(ranges):
        rows = [
            {"key": f"s3://{bucket}/images/{i}.jpg", "top_k": [], "model": "digits", "error": None}
            for i in range(first, end)
        ]
        name = f"part-{partition:05d}"
        client.put_object(
            Bucket=bucket,
            Key=f"_staging/demo/run/output/{name}.jsonl",
            Body="".join(json.dumps(r) + "\n" for r in rows),
        )
        metrics = {
            "partition": partition,
            "rows": end - first,
            "predicted": end - first - errors,
            "errors": errors,
            "errors_by_type": {"corrupt_image": errors},
            "download_seconds": 0.5,
            "decode_seconds": 0.25,
            "inference_seconds": 1.0,
            "wall_seconds": 2.0,
            "first_index": first,
            "end_index": end,
            "worker_peak_rss_mb": 900 + partition,
            "worker_peak_address_space_mb": 2000 - partition,
            "precision": "int8",
            "int8_top1_agreement": 0.995,
        }
        client.put_object(
            Bucket=bucket,
            Key=f"_staging/demo/run/output/_metrics/{name}.json",
            Body=json.dumps(metrics),
        )


def _keys(s3_env, bucket: str, prefix: str) -> list[str]:
    listing = s3_env.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"][len(prefix) :] for o in listing.get("Contents", [])]


def _context() -> dict:
    return {
        "outlet_events": OutletEventAccessors(),
        "dag_run": type("DagRun", (), {"start_date": datetime(2026, 11, 22, tzinfo=UTC)})(),
    }


def _publish(bucket: str, context: dict | None = None) -> dict:
    request = _request(bucket)
    manifest = {
        "manifest_uri": f"s3://{bucket}/_staging/demo/run/manifest/manifest.json",
        "total": TOTAL,
        "shards": 1,
        "status": "pending",
    }
    operator = PublishResultsOperator(
        task_id="publish_results",
        request=request,
        manifest=manifest,
        plan=plan_run(
            ResolvedRequest.of(request), [{"request": request, "manifest": manifest}]
        ).as_xcom(),
        asset=PREDICTIONS,
    )
    return operator.execute(context or _context())


@pytest.fixture
def previous_publication(s3_env, bucket: str) -> None:
    """An earlier run's publication with more partitions than the new one."""
    client = s3_env.client()
    for name in (
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
        "_SUCCESS",
        "_metrics/part-00002.json",
        "_run_summary.json",
    ):
        client.put_object(Bucket=bucket, Key=f"predictions/dt=2026-11-22/{name}", Body=b"old")


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (((0, 6),), "partitions cover manifest positions \\[0, 6\\), expected 10"),
        (((0, 6), (7, 10)), "partition 1 starts at manifest position 7, expected 6"),
    ],
)
def test_refuses_incomplete_output_and_publishes_nothing(
    aws_conn, s3_env, bucket, previous_publication, ranges, message
) -> None:
    _stage(s3_env, bucket, ranges)
    with pytest.raises(IncompleteOutputError, match=message):
        _publish(bucket)
    assert "_SUCCESS" in _keys(s3_env, bucket, "predictions/dt=2026-11-22/")  # untouched


def test_refuses_a_missing_part_or_metrics_part(aws_conn, s3_env, bucket) -> None:
    _stage(s3_env, bucket)
    client = s3_env.client()
    client.delete_object(Bucket=bucket, Key="_staging/demo/run/output/part-00001.jsonl")
    with pytest.raises(IncompleteOutputError, match=r"partitions \[1\] have a metrics part but no"):
        _publish(bucket)
    _stage(s3_env, bucket)
    client.delete_object(Bucket=bucket, Key="_staging/demo/run/output/_metrics/part-00000.json")
    with pytest.raises(
        IncompleteOutputError, match=r"partitions \[0\] have a part but no _metrics"
    ):
        _publish(bucket)
    assert _keys(s3_env, bucket, "predictions/") == []


def test_refuses_a_row_count_other_than_the_manifest_total(aws_conn, s3_env, bucket) -> None:
    _stage(s3_env, bucket)
    s3_env.client().put_object(
        Bucket=bucket,
        Key="_staging/demo/run/output/_metrics/part-00001.json",
        Body=json.dumps({"rows": 3, "first_index": 6, "end_index": 10}),
    )
    with pytest.raises(IncompleteOutputError, match="9 rows staged, manifest total is 10"):
        _publish(bucket)


def test_refuses_an_output_prefix_that_contains_the_input(aws_conn, bucket) -> None:
    operator = PublishResultsOperator(
        task_id="p",
        request={**_request(bucket), "output_uri": f"s3://{bucket}/"},
        manifest={"manifest_uri": "s3://b/m.json", "total": 1, "shards": 1},
    )
    with pytest.raises(ValueError, match="output_uri: .* overlaps the staging area"):
        operator.execute(_context())


def test_replaces_previous_publication_success_last(
    aws_conn, s3_env, bucket, previous_publication, monkeypatch
) -> None:
    _stage(s3_env, bucket)
    calls: list[tuple[str, str]] = []
    for name in ("write_bytes", "copy", "delete"):
        real = getattr(s3, name)

        def spy(*args, _real=real, _name=name):
            calls.append((_name, str(args[-1] if _name != "write_bytes" else args[1])))
            return _real(*args)

        monkeypatch.setattr(s3, name, spy)

    context = _context()
    result = _publish(bucket, context)

    out = "predictions/dt=2026-11-22/"
    assert result == {
        "partition_date": "2026-11-22",
        "output_uri": f"s3://{bucket}/{out}",
        "rows": 10,
        "errors": 2,
        "summary_uri": f"s3://{bucket}/{out}_run_summary.json",
    }
    assert sorted(_keys(s3_env, bucket, out)) == [
        "_SUCCESS",
        "_metrics/part-00000.json",
        "_metrics/part-00001.json",
        "_run_summary.json",
        "part-00000.jsonl",
        "part-00001.jsonl",
    ]
    assert calls[0] == ("delete", f"['{out}_SUCCESS']")  # readers stop trusting the prefix first
    assert calls[-2] == ("write_bytes", f"s3://{bucket}/{out}_run_summary.json")
    assert calls[-1] == ("write_bytes", f"s3://{bucket}/{out}_SUCCESS")
    client = s3_env.client()
    published = client.get_object(Bucket=bucket, Key=f"{out}part-00001.jsonl")
    assert published["Body"].read().decode().count("\n") == 4  # the new rows, not "old"
    assert published["ServerSideEncryption"] == "AES256"

    summary = json.loads(
        client.get_object(Bucket=bucket, Key=f"{out}_run_summary.json")["Body"].read()
    )
    assert summary["rows"] == 10 and summary["predicted"] == 8 and summary["errors"] == 2
    # what the next publication of the date may replace: exactly this one's objects
    assert summary["published_objects"] == sorted(_keys(s3_env, bucket, out))
    assert summary["errors_by_type"] == {"corrupt_image": 2}
    assert summary["partitions"] == 2
    assert summary["model"] == "digits" and summary["run_id"] == "manual__2026-11-22"
    assert (summary["precision"], summary["int8_top1_agreement"]) == ("int8", 0.995)
    # the largest Python worker of any partition, for model.worker_memory_mb (docs/SIZING.md)
    assert (summary["worker_peak_rss_mb"], summary["worker_peak_address_space_mb"]) == (901, 2000)
    assert summary["input"] == f"s3://{bucket}/images/"
    assert summary["output_uri"] == f"s3://{bucket}/{out}"
    assert summary["seconds_by_stage"] == {
        "download": 1.0,
        "decode": 0.5,
        "inference": 2.0,
        "wall": 4.0,
    }
    assert summary["job_seconds"] >= 2.0  # at least one partition's wall time
    assert summary["images_per_second"] == pytest.approx(10 / summary["job_seconds"], rel=0.01)
    assert summary["run_seconds"] > 0
    assert summary["partition_date"] == "2026-11-22"
    # what re-running the same request compares, to skip a date already published
    assert summary["request_fingerprint"] == "f" * 64
    # the plan's model of this date: 2 cores x 5 images/s, a 9 s step start, a 20 s cluster start
    assert summary["estimate"]["range_share_cluster_seconds"] == 20 + 9 + 1.0
    assert summary["estimate"]["own_run_cluster_seconds"] == 20 + 9 + 1.0
    assert summary["estimate"]["own_run_cost_usd"] is None  # the local backend has no price
    # the rate per task: assumed by the plan, and measured (10 rows over 2 x 2.0 task seconds)
    assert summary["estimate"]["images_per_task_second"] == 5.0
    assert summary["images_per_task_second"] == 2.5

    alias_events = context["outlet_events"][AssetAlias(DEFAULT_ASSET_ALIAS)].asset_alias_events
    assert len(alias_events) == 1
    assert alias_events[0].dest_asset_key.uri == Asset(f"s3://{bucket}/{out}").uri
    assert alias_events[0].extra["rows"] == 10 and alias_events[0].extra["model"] == "digits"
    # the pipeline's asset gets the date as its partition key: a consumer runs once per date
    predictions = context["outlet_events"][PREDICTIONS]
    assert predictions.partition_keys == {"2026-11-22"}
    assert predictions.extra["rows"] == 10 and predictions.extra["partition_date"] == "2026-11-22"


def test_publishing_replaces_only_what_the_previous_publication_owned(
    aws_conn, s3_env, bucket
) -> None:
    """Neighbours survive: a file someone put beside the date's objects, another prefix nested
    in it. What the previous summary listed (extra.bin) and parts by the contract's names go."""
    out = "predictions/dt=2026-11-22/"
    client = s3_env.client()
    previous = {"published_objects": ["_SUCCESS", "_run_summary.json", "extra.bin"]}
    client.put_object(Bucket=bucket, Key=f"{out}_run_summary.json", Body=json.dumps(previous))
    old = ["_SUCCESS", "extra.bin", "part-00005.jsonl", "_metrics/part-00005.json"]
    neighbours = ["notes.txt", "dt=2026-11-21/_SUCCESS", "dt=2026-11-21/part-00000.jsonl"]
    for name in old + neighbours:
        client.put_object(Bucket=bucket, Key=out + name, Body=b"x")
    _stage(s3_env, bucket)
    _publish(bucket)
    left = set(_keys(s3_env, bucket, out))
    assert set(neighbours) <= left  # not ours: untouched
    assert not {"extra.bin", "part-00005.jsonl", "_metrics/part-00005.json"} & left
    assert left - set(neighbours) == {
        "_SUCCESS", "_run_summary.json", "part-00000.jsonl", "part-00001.jsonl",
        "_metrics/part-00000.json", "_metrics/part-00001.json",
    }  # fmt: skip


def test_operator_declares_the_asset_alias_outlet() -> None:
    operator = PublishResultsOperator(
        task_id="p", request=date_request(), manifest={}, asset_alias="predictions.demo"
    )
    assert operator.outlets == [AssetAlias("predictions.demo")]


@pytest.mark.parametrize(
    ("ranges", "rows", "message"),
    [
        (((0, 6), (4, 10)), (6, 4), "partition 1 starts at manifest position 4, expected 6"),
        (((0, 10), (0, 10)), (5, 5), "starts at manifest position 0, expected 10"),
    ],
    ids=["overlap", "same range twice"],
)
def test_refuses_overlapping_partitions_even_when_the_rows_add_up(
    aws_conn, s3_env, bucket, ranges, rows, message
) -> None:
    # Rows and the covered end both match the manifest's total: only the ranges give it away.
    _stage(s3_env, bucket, ranges)
    client = s3_env.client()
    for partition, ((first, end), count) in enumerate(zip(ranges, rows, strict=True)):
        client.put_object(
            Bucket=bucket,
            Key=f"_staging/demo/run/output/_metrics/part-{partition:05d}.json",
            Body=json.dumps({"partition": partition, "rows": count, "errors": 0,
                             "first_index": first, "end_index": end}),
        )  # fmt: skip
    assert sum(rows) == TOTAL
    with pytest.raises(IncompleteOutputError, match=message):
        _publish(bucket)
    assert _keys(s3_env, bucket, "predictions/") == []


def test_success_marker_is_an_empty_object(aws_conn, s3_env, bucket) -> None:
    _stage(s3_env, bucket)
    _publish(bucket)
    marker = s3_env.client().get_object(Bucket=bucket, Key="predictions/dt=2026-11-22/_SUCCESS")
    assert marker["ContentLength"] == 0 and marker["Body"].read() == b""
