"""The dates of a run (emr_inference.dates): each date's status before any cluster, the request
fingerprint that says whether a publication is of the same request, and the per-date helpers
the step operators use (skip unless pending, a wait timeout per date of the run)."""

from __future__ import annotations

import hashlib
import json

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from emr_inference.dates import (
    EMPTY,
    PENDING,
    PUBLISHED,
    content_identity,
    date_status,
    dates_by_status,
    published_summary,
    request_fingerprint,
    skip_unless_pending,
    stage_date,
    step_timeout,
)
from emr_inference.resolved import ResolvedRequest
from emr_inference.s3 import S3Uri, s3_hook

from tests.unit.emr_inference.pipeline_fixtures import resolved_request

KEYS = "a" * 64
MODEL = resolved_request().as_json()["model"]


def request(**fields) -> ResolvedRequest:
    """A resolved one-date request (the scheduled run of 2026-11-22) with ``fields`` replaced."""
    return ResolvedRequest.of({**resolved_request().as_json(), **fields})


def test_the_statuses_are_the_words_operators_see():
    assert (PENDING, EMPTY, PUBLISHED) == ("pending", "empty", "published")


def test_the_fingerprint_is_the_same_for_another_run_of_the_same_request():
    """What another run (its own run id and staging area) computes for the same date must match,
    or re-running a range would redo every date already published."""
    first = request()
    again = request(run_id="manual__again", staging_uri="s3://out-bucket/_staging/again/")
    fingerprint = request_fingerprint(first, KEYS)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0  # hex SHA-256
    assert request_fingerprint(again, KEYS) == fingerprint
    assert request_fingerprint(request(dry_run=True, batch_size=7), KEYS) == fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"top_k": 3},
        {"precision": "int8"},
        {"model": {**MODEL, "params": "s3://models/resnet18/v2.params"}},
        {"sse": {"mode": "AES256"}},
        {"output_uri": "s3://out-bucket/predictions/v2/dt=2026-11-22/"},
    ],
    ids=["top_k", "precision", "model", "encryption", "output"],
)
def test_a_setting_the_rows_depend_on_changes_the_fingerprint(change):
    assert request_fingerprint(request(**change), KEYS) != request_fingerprint(request(), KEYS)


def test_other_listed_keys_change_the_fingerprint():
    assert request_fingerprint(request(), "b" * 64) != request_fingerprint(request(), KEYS)
    assert request_fingerprint(request(), None) != request_fingerprint(request(), KEYS)


PUBLISHED_BEFORE = {"request_fingerprint": "f" * 64, "run_id": "scheduled__earlier"}


@pytest.mark.parametrize(
    ("total", "fields", "published", "status"),
    [
        (5, {}, None, "pending"),  # never published
        (5, {}, {}, "pending"),
        (5, {}, PUBLISHED_BEFORE, "published"),  # same request, another run
        (1, {}, PUBLISHED_BEFORE, "published"),
        (0, {}, PUBLISHED_BEFORE, "empty"),  # nothing to list: empty, whatever was published
        (0, {"republish": True}, None, "empty"),
        (5, {"republish": True}, PUBLISHED_BEFORE, "pending"),  # asked to redo it
        (5, {"republish": False}, PUBLISHED_BEFORE, "published"),
        (5, {"request_fingerprint": "e" * 64}, PUBLISHED_BEFORE, "pending"),  # another request
        (5, {"run_id": "scheduled__earlier"}, PUBLISHED_BEFORE, "pending"),  # a cleared run
        (5, {}, {"request_fingerprint": "f" * 64}, "published"),  # a summary without a run id
        (5, {}, {"run_id": "scheduled__earlier"}, "pending"),  # nor a fingerprint: not ours
    ],
)
def test_date_status(total, fields, published, status):
    date = request(**{"request_fingerprint": "f" * 64, "run_id": "manual__now", **fields})
    assert date_status(total, date, published) == status


def work(date: str, status: str) -> dict:
    return {"request": {"partition_date": date}, "manifest": {"status": status}}


def test_dates_by_status_lists_every_status_in_the_runs_order():
    works = [
        work("2026-11-03", "pending"),
        work("2026-11-01", "published"),
        work("2026-11-02", "pending"),
        work("2026-11-04", "published"),
    ]
    assert dates_by_status(works) == {
        "pending": ["2026-11-03", "2026-11-02"],
        "empty": [],
        "published": ["2026-11-01", "2026-11-04"],
    }
    assert dates_by_status([]) == {"pending": [], "empty": [], "published": []}
    assert dates_by_status([work("2026-11-05", "empty")])["empty"] == ["2026-11-05"]


@pytest.mark.parametrize("status", ["empty", "published"])
def test_a_date_without_work_skips_its_step_saying_why(status):
    with pytest.raises(AirflowSkipException, match=f"^2026-11-22 is {status}: no step needed$"):
        skip_unless_pending(request(), {"status": status})


def test_a_pending_date_or_one_staged_without_a_status_gets_its_step():
    """A manifest XCom written before statuses existed (a run in flight across a deploy) has
    none: its date is pending."""
    assert skip_unless_pending(request(), {"status": "pending"}) is None
    assert skip_unless_pending(request(), {"total": 5}) is None


@pytest.mark.parametrize(
    ("fields", "timeout"),
    [({}, 600), ({"dates_in_run": 1}, 600), ({"dates_in_run": 3}, 1800),
     ({"dates_in_run": None}, 600), ({"dates_in_run": 0}, 600), ({"dates_in_run": "2"}, 1200)],
)  # fmt: skip
def test_a_dates_step_may_wait_for_every_date_of_the_run(fields, timeout):
    """One cluster runs the dates' steps one after another: the last may wait for all."""
    assert step_timeout(600, request(**fields)) == timeout
    assert step_timeout(0.5, request(**fields)) == timeout / 1200


def put(s3_env, bucket: str, key: str, body: bytes) -> None:
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=body)


def test_only_a_complete_publication_has_a_summary(aws_conn, bucket, s3_env):
    """``_SUCCESS`` marks a complete publication; without it (or without a readable JSON object
    beside it) the date counts as not published."""
    hook = s3_hook(aws_conn)
    output = S3Uri.parse(f"s3://{bucket}/out/dt=2026-11-22/", "output_uri", prefix=True)
    summary = {"request_fingerprint": "f" * 64, "run_id": "earlier", "rows": 5}
    put(s3_env, bucket, "out/dt=2026-11-22/_run_summary.json", json.dumps(summary).encode())
    assert published_summary(hook, output) is None  # a publication in progress, or one that died
    put(s3_env, bucket, "out/dt=2026-11-22/_SUCCESS", b"")
    assert published_summary(hook, output) == summary
    for body in (b"not json", b"[1, 2]", b"\xff\xfe"):
        put(s3_env, bucket, "out/dt=2026-11-22/_run_summary.json", body)
        assert published_summary(hook, output) is None


def test_a_success_marker_without_a_summary_is_not_a_publication(aws_conn, bucket, s3_env):
    """Another writer's output (a Spark job writes ``_SUCCESS`` too, with no summary): the date is
    redone, rather than ``stage_manifest`` failing."""
    put(s3_env, bucket, "out/dt=2026-11-22/_SUCCESS", b"")
    output = S3Uri.parse(f"s3://{bucket}/out/dt=2026-11-22/", "output_uri", prefix=True)
    assert published_summary(s3_hook(aws_conn), output) is None


def test_planning_a_date_lists_and_counts_without_writing(aws_conn, bucket, s3_env):
    """``make plan`` (write=False): the keys, their bytes and their digest, no manifest."""
    for name, body in (("a.jpg", b"12345"), ("b.JPG", b"123"), ("c.txt", b"1"), ("d.png", b"1")):
        put(s3_env, bucket, f"images/dt=2026-11-22/{name}", body)
    locations = {
        "input_uri": f"s3://{bucket}/images/dt=2026-11-22/",
        "output_uri": f"s3://{bucket}/out/dt=2026-11-22/",
        "staging_uri": f"s3://{bucket}/_staging/plan/",
    }
    date = request(**locations, extensions=[".jpg"])
    staged = stage_date(s3_hook(aws_conn), date, write=False)
    keys = [f"s3://{bucket}/images/dt=2026-11-22/{name}" for name in ("a.jpg", "b.JPG")]
    assert staged["manifest"] == {
        "manifest_uri": "",
        "total": 2,
        "shards": 0,
        "bytes": 8,
        "keys_sha256": hashlib.sha256("".join(f"{k}\n" for k in keys).encode()).hexdigest(),
        "status": "pending",
    }
    objects = {o["Key"]: o for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]}
    inputs = "".join(
        f"{k}\t{objects[k.split('/', 3)[3]]['Size']}\t{objects[k.split('/', 3)[3]]['ETag']}\n"
        for k in keys
    )
    content = content_identity(s3_hook(aws_conn), date, hashlib.sha256(inputs.encode()).hexdigest())
    fingerprint = request_fingerprint(date, staged["manifest"]["keys_sha256"], content)
    assert (
        staged["request"] == date.model_copy(update={"request_fingerprint": fingerprint}).as_json()
    )
    listed = s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert not [o["Key"] for o in listed if not o["Key"].startswith("images/")]  # nothing written
    # every extension: every object; a sample limit stops the listing
    every = request(**locations, extensions=[".jpg", ".png", ".txt"])
    listed = stage_date(s3_hook(aws_conn), every, write=False)["manifest"]
    assert (listed["total"], listed["bytes"]) == (4, 10)
    limited = request(**locations, extensions=[".jpg", ".png", ".txt"], sample_limit=3)
    sample = stage_date(s3_hook(aws_conn), limited, write=False)["manifest"]
    assert (sample["total"], sample["bytes"]) == (3, 9)


# --- "published" means the same inputs and the same model bytes, not only the same names


@pytest.fixture
def content_date(aws_conn, bucket, s3_env):
    """A date with two images and a model whose files are in S3 (no sha256 pinned)."""
    for name in ("a.jpg", "b.jpg"):
        put(s3_env, bucket, f"images/dt=2026-11-22/{name}", name.encode())
    model = {**MODEL, "symbol_sha256": None, "params_sha256": None, "labels_sha256": None}
    for part in ("symbol", "params", "labels"):
        model[part] = f"s3://{bucket}/model/{part}"
        put(s3_env, bucket, f"model/{part}", b"v1")
    return request(
        input_uri=f"s3://{bucket}/images/dt=2026-11-22/",
        output_uri=f"s3://{bucket}/out/dt=2026-11-22/",
        staging_uri=f"s3://{bucket}/_staging/plan/",
        extensions=[".jpg"],
        model=model,
    )


def fingerprint_of(aws_conn, date) -> str:
    return stage_date(s3_hook(aws_conn), date, write=False)["request"]["request_fingerprint"]


def test_an_image_replaced_under_the_same_key_changes_the_fingerprint(
    aws_conn, bucket, s3_env, content_date
):
    before = fingerprint_of(aws_conn, content_date)
    assert fingerprint_of(aws_conn, content_date) == before  # unchanged inputs: the same
    put(s3_env, bucket, "images/dt=2026-11-22/b.jpg", b"a fixed image")
    after = fingerprint_of(aws_conn, content_date)
    assert after != before
    # so a publication of the old bytes no longer makes the date "published"
    published = {"request_fingerprint": before, "run_id": "earlier"}
    redo = content_date.model_copy(update={"request_fingerprint": after})
    assert date_status(2, redo, published) == PENDING
    assert date_status(2, redo, {**published, "request_fingerprint": after}) == PUBLISHED


def test_a_model_file_replaced_in_place_changes_the_fingerprint(
    aws_conn, bucket, s3_env, content_date
):
    before = fingerprint_of(aws_conn, content_date)
    put(s3_env, bucket, "model/params", b"v2: retrained")
    retrained = fingerprint_of(aws_conn, content_date)
    assert retrained != before
    # retrained again into a file of the same size: its ETag tells it apart
    put(s3_env, bucket, "model/params", b"v3: retrained")
    assert fingerprint_of(aws_conn, content_date) not in (before, retrained)


def test_an_onnx_file_replaced_in_place_changes_the_fingerprint(
    aws_conn, bucket, s3_env, content_date
):
    """A model named as an ONNX file: its bytes (and the labels') identify the model."""
    put(s3_env, bucket, "model/model.onnx", b"v1")
    mxnet = dict.fromkeys(("symbol", "params"))
    onnx = {"onnx": f"s3://{bucket}/model/model.onnx", "runtime": "onnxruntime"}
    model = {**content_date.model.model_dump(mode="json"), **mxnet, **onnx}
    date = content_date.model_copy(update={"model": type(content_date.model)(**model)})
    assert sorted(content_identity(s3_hook(aws_conn), date, None)["model"]) == ["labels", "onnx"]
    before = fingerprint_of(aws_conn, date)
    put(s3_env, bucket, "model/model.onnx", b"v2: exported again")
    assert fingerprint_of(aws_conn, date) != before


def test_a_pinned_model_sha256_stands_for_the_files_bytes(aws_conn, bucket, content_date):
    model = {**content_date.model.model_dump(mode="json"), "params_sha256": "c" * 64}
    pinned = content_date.model_copy(update={"model": type(content_date.model)(**model)})
    content = content_identity(s3_hook(aws_conn), pinned, None)
    assert content["model"]["params"] == "sha256:" + "c" * 64
    assert content["model"]["symbol"].startswith("2:")  # size and ETag of the unpinned file
    assert content["inputs_sha256"] is None  # a supplied manifest's objects are not listed


#: Every setting the published rows depend on, written out (not read from the shapes_rows flags
#: the fingerprint itself uses): dropping one's flag would let a run skip a date whose rows it
#: would change, and this list says so.
SHAPES_ROWS = {
    "sse.mode", "sse.kms_key_id", "model.name", "model.symbol", "model.params", "model.labels",
    "model.symbol_sha256", "model.params_sha256", "model.labels_sha256", "model.input_name",
    "model.image_size", "model.scale", "model.mean", "model.std", "top_k", "precision",
    "int8.min_agreement", "int8.on_disagreement", "int8.calibration_uri",
    "int8.calibration_images", "int8.agreement_images", "model.runtime",
    "conversion.min_agreement", "model.onnx", "model.onnx_sha256",
}  # fmt: skip
#: How the work is split and run: no effect on the rows, so not in the fingerprint.
HOW_IT_RUNS = {
    "batch_size", "partitions", "max_partition_keys", "partition_seconds",
    "estimate.images_per_task_second", "max_error_rate", "prefetch_threads", "prefetch_depth",
    "omp_threads", "engine", "int8.cache", "conversion.cache",
}  # fmt: skip


def test_the_fingerprint_covers_each_row_shaping_setting_named_one_by_one():
    from emr_inference.dates import ROW_SETTINGS

    names = {setting.name for setting in ROW_SETTINGS}
    assert names == SHAPES_ROWS
    assert not names & HOW_IT_RUNS
