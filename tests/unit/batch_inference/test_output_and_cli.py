"""Output rows and parts, encryption arguments, the command line and the driver's checks."""

from __future__ import annotations

import json

import pytest
from batch_inference import output
from batch_inference.cli import build_parser, parse_config
from batch_inference.config import Encryption, JobConfig
from batch_inference.contract.formats import RowsFormat, part_partition
from batch_inference.contract.settings import derived_partition_keys
from batch_inference.errors import JobFailed
from batch_inference.job import resolve_partitions, summarise, systemic_cause
from batch_inference.output import (
    RowsPart,
    encode_rows,
    error_row,
    metrics_name,
    part_name,
    prediction_row,
    remove_stale_parts,
    write_metrics,
)
from batch_inference.s3io import make_client, parse_s3_uri

REQUIRED = [
    "--manifest", "s3://b/run/manifest.json", "--output", "s3://b/run/out/", "--run-id", "r1",
    "--model-name", "m", "--model-symbol", "s3://b/m/s.json", "--model-params", "s3://b/m/p",
    "--model-labels", "s3://b/m/l.txt",
]  # fmt: skip


def test_rows_are_contract_json_lines_readable_by_a_plain_reader():
    top = [{"label": "cat", "index": 3, "probability": 0.91}]
    rows = [
        prediction_row("s3://b/a.jpg", top, "resnet", "run", "int8"),
        error_row("s3://b/b.jpg", {"type": "corrupt_image", "message": "bad"}, "resnet", "run"),
    ]
    body = encode_rows(rows).decode("utf-8")
    assert body.endswith("\n") and body.count("\n") == 2
    assert [json.loads(line) for line in body.splitlines()] == [
        {
            "key": "s3://b/a.jpg",
            "top_k": top,
            "model": "resnet",
            "precision": "int8",
            "run_id": "run",
            "error": None,
        },
        {
            "key": "s3://b/b.jpg",
            "top_k": [],
            "model": "resnet",
            "precision": "fp32",
            "run_id": "run",
            "error": {"type": "corrupt_image", "message": "bad"},
        },
    ]
    assert (part_name(7), metrics_name(7)) == ("part-00007.jsonl", "_metrics/part-00007.json")


def test_parts_are_written_with_the_requested_encryption_and_fingerprint(bucket, s3_env):
    output = parse_s3_uri(f"s3://{bucket}/out", prefix=True)
    metrics = {"partition": 3, "fingerprint": "f" * 64}
    part = RowsPart(make_client(), output.join(part_name(3)), Encryption("AES256"), "f" * 64)
    part.close()
    write_metrics(make_client(), output, 3, metrics, Encryption("AES256"))
    client = s3_env.client()
    for key in ("out/part-00003.jsonl", "out/_metrics/part-00003.json"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["Metadata"] == {"fingerprint": "f" * 64}
    assert client.get_object(Bucket=bucket, Key="out/part-00003.jsonl")["Body"].read() == b""


def write_partition_parts(
    client, output, partition: int, rows: list[dict], metrics: dict, encryption: Encryption
) -> None:
    """A partition's rows part, then its metrics part, as process_partition writes them."""
    part = RowsPart(client, output.join(part_name(partition)), encryption, metrics["fingerprint"])
    part.add(rows)
    part.close()
    write_metrics(client, output, partition, metrics, encryption)


def big_rows(count: int, start: int = 0) -> list[dict]:
    """Rows of ~8 KB each (a top-k of many classes): a thousand fill a piece."""
    top = [{"label": f"class-{i:04d}", "index": i, "probability": 0.001} for i in range(150)]
    return [prediction_row(f"s3://b/{start + i}.jpg", top, "m", "r") for i in range(count)]


def test_a_large_rows_part_streams_in_pieces_and_appears_whole(bucket, s3_env):
    """More rows than one piece: a multipart upload, invisible until close(), exactly the rows."""
    client = make_client()
    target = parse_s3_uri(f"s3://{bucket}/out/part-00000.jsonl")
    part = RowsPart(client, target, Encryption("AES256"), "f" * 64)
    batches = [big_rows(300, start) for start in range(0, 1500, 300)]  # ~12 MiB in 5 batches
    for batch in batches:
        part.add(batch)
        assert len(part.buffer) < part.piece_bytes  # never more than one piece held
    assert len(part.pieces) >= 1 and part.upload_id  # pieces went out while rows came in
    listing = client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert "Contents" not in listing  # nothing visible before close()
    part.close()
    head = client.head_object(Bucket=target.bucket, Key=target.key)
    assert head["Metadata"] == {"fingerprint": "f" * 64}
    assert head["ServerSideEncryption"] == "AES256"
    body = client.get_object(Bucket=target.bucket, Key=target.key)["Body"].read()
    assert body == encode_rows([row for batch in batches for row in batch])


#: A format whose bytes are not one piece per row: a JSON array needs a head, separators that depend
#: on what came before, and a tail only known at the end (as a columnar format's footer is).
JSON_ARRAY = RowsFormat("json-array", ".json", "application/json")


class JsonArrayEncoder:
    def __init__(self) -> None:
        self.started = False

    def add(self, rows: list[dict]) -> bytes:
        pieces = []
        for row in rows:
            pieces.append("," if self.started else "[")
            pieces.append(json.dumps(row))
            self.started = True
        return "".join(pieces).encode()

    def finish(self) -> bytes:
        return b"]" if self.started else b"[]"


@pytest.mark.parametrize("rows", [0, 3, 1500], ids=["empty", "one piece", "multipart"])
def test_a_rows_format_other_than_json_lines_streams_through_the_same_part(
    bucket, s3_env, monkeypatch, rows
):
    """The output-format seam: a registered format's encoder, its head and tail included, makes
    the part whatever its size, under the format's name and content type."""
    monkeypatch.setitem(output.ENCODERS, JSON_ARRAY.name, JsonArrayEncoder)
    client = make_client()
    name = part_name(4, JSON_ARRAY)
    assert (name, part_partition(name, JSON_ARRAY), part_partition(name)) == (
        "part-00004.json",
        4,
        None,
    )
    target = parse_s3_uri(f"s3://{bucket}/out/{name}")
    part = RowsPart(client, target, Encryption(), "f" * 64, rows_format=JSON_ARRAY)
    written = big_rows(rows)
    for start in range(0, rows, 500):
        part.add(written[start : start + 500])
    part.close()
    assert bool(part.upload_id) == (rows > 1000)  # the largest went out in pieces
    obj = client.get_object(Bucket=target.bucket, Key=target.key)
    assert obj["ContentType"] == "application/json"
    assert json.loads(obj["Body"].read()) == written


def test_an_aborted_rows_part_leaves_nothing(bucket, s3_env):
    client = make_client()
    target = parse_s3_uri(f"s3://{bucket}/out/part-00001.jsonl")
    part = RowsPart(client, target, Encryption(), "f" * 64)
    part.add(big_rows(1500))
    assert part.upload_id  # a piece was uploaded
    part.abort()
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_parts_of_partitions_beyond_the_count_are_removed(bucket, s3_env):
    client = s3_env.client()
    kept = [part_name(p) for p in range(3)] + [metrics_name(p) for p in range(3)]
    kept += ["notes.txt", "_metrics/other.json", "part-00003.jsonl.tmp"]
    for name in [*kept, part_name(3), metrics_name(3)]:
        client.put_object(Bucket=bucket, Key=f"out/{name}", Body=b"")
    removed = remove_stale_parts(make_client(), parse_s3_uri(f"s3://{bucket}/out", prefix=True), 3)
    assert sorted(removed) == ["out/_metrics/part-00003.json", "out/part-00003.jsonl"]
    left = client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    assert sorted(item["Key"] for item in left) == sorted(f"out/{name}" for name in kept)


def test_encryption_arguments():
    assert Encryption().put_object_args() == {}
    assert Encryption("aws:kms", "key-1").put_object_args() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "key-1",
    }
    with pytest.raises(ValueError, match="kms_key_id is only valid with mode .aws:kms."):
        Encryption("AES256", "key-1")


def test_cli_defaults_follow_the_contract():
    config = parse_config(REQUIRED)
    assert (config.batch_size, config.top_k, config.partitions) == (64, 5, 0)
    assert config.max_error_rate == 0.1 and config.omp_threads == 0
    assert config.model.input_name == "data" and config.encryption.mode == "none"
    assert config.preprocess.image_size == 224
    assert config.preprocess.scale == 0.00392156862745098
    assert config.preprocess.mean == (0.485, 0.456, 0.406)
    assert config.preprocess.std == (0.229, 0.224, 0.225)
    assert config.resume is True
    assert parse_config([*REQUIRED, "--no-resume"]).resume is False
    assert config.engine == "rdd"
    assert parse_config([*REQUIRED, "--engine", "predict_batch_udf"]).engine == "predict_batch_udf"


def test_cli_parses_every_option():
    config = parse_config(
        REQUIRED + [
            "--model-params-sha256", "ab" * 32, "--input-name", "x", "--image-size", "96",
            "--mean", "0.5,0.5,0.5", "--std", "1,2,3", "--scale", "1", "--batch-size", "8",
            "--top-k", "3", "--partitions", "12", "--max-error-rate", "0.5",
            "--prefetch-threads", "2", "--prefetch-depth", "4", "--omp-threads", "3",
            "--sse", "aws:kms", "--sse-kms-key-id", "alias/k",
        ]
    )  # fmt: skip
    assert config.model.params_sha256 == "ab" * 32 and config.model.input_name == "x"
    assert config.preprocess.std == (1.0, 2.0, 3.0) and config.preprocess.image_size == 96
    assert (config.batch_size, config.top_k, config.partitions) == (8, 3, 12)
    assert (config.prefetch_threads, config.prefetch_depth, config.omp_threads) == (2, 4, 3)
    assert config.encryption == Encryption("aws:kms", "alias/k")


def test_help_documents_every_argument_with_its_default():
    text = " ".join(build_parser().format_help().split())
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
    assert "--batch-size BATCH_SIZE Images per forward pass (default: 64)" in text
    assert "--mean MEAN R,G,B means subtracted after scale (default: 0.485,0.456,0.406)" in text
    assert "--no-resume Redo every partition" in text and "(default: True)" not in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mean", "1,2"], "--mean: expected three comma-separated floats"),
        (["--std", "a,b,c"], "--std: expected three comma-separated floats, got 'a,b,c'"),
        (["--sse", "aes"], "argument --sse: invalid choice: 'aes'"),
        (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
        (["--batch-size", "0"], "invalid batch_size: 0"),
        (
            ["--sse", "AES256", "--sse-kms-key-id", "k"],
            "kms_key_id is only valid with mode 'aws:kms'",
        ),
        (["--std", "1,0,1"], "std must not contain 0"),
        (["--engine", "spark"], "--engine: invalid choice: 'spark'"),
    ],
)
def test_cli_errors_name_the_bad_argument(extra, message, capsys):
    with pytest.raises(SystemExit) as caught:
        parse_config(REQUIRED + extra)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_partitions_are_derived_from_the_cluster_and_the_key_count():
    assert resolve_partitions(5, 10, 8) == 5
    assert resolve_partitions(0, 10_000, 8) == 16
    assert resolve_partitions(0, 250, 8) == 3
    assert resolve_partitions(0, 0, 8) == 1
    # Above the core count, a multiple of it: no last wave that leaves cores idle.
    assert resolve_partitions(0, 256, 2) == 2
    assert resolve_partitions(0, 1_100, 8) == 8
    assert resolve_partitions(0, 1_500, 8) == 8


def test_partitions_stay_bounded_in_keys_at_any_scale():
    # 10 million keys on 64 task slots: not 128 partitions of 78,000 keys, but 2,000 of 5,000
    assert resolve_partitions(0, 10_000_000, 64, 5_000) == 2_048  # a multiple of the slots
    assert resolve_partitions(0, 10_000_000, 64, max_keys=10_000) == 1_024
    assert resolve_partitions(0, 1_000_000, 8, 5_000) == 200
    assert resolve_partitions(10, 100_000, 8, 5_000) == 20  # a requested count is raised
    assert resolve_partitions(10, 100_000, 8, max_keys=100_000) == 10
    for total in (1, 4_999, 5_001, 123_457, 3_000_001):
        for max_keys in (100, 5_000, 7_500):
            count = resolve_partitions(0, total, 16, max_keys)
            assert -(-total // count) <= max_keys, total  # the largest partition of the range
    # the default bound is the default settings' derived one: 25 images/s x 300 s
    assert resolve_partitions(0, 10_000_000, 64) == 1_344  # 1,334 of 7,500 keys, rounded up


def job_config(*extra: str) -> JobConfig:
    return parse_config(REQUIRED + list(extra))


def test_the_partition_bound_is_derived_from_the_rate_and_the_partition_seconds():
    # by default 25 images per task-second (ResNet-18 fp32 on a core) x 300 s: five minutes
    assert job_config().partition_keys() == (
        7_500, "derived: 25 images per task-second x 300 s, at least 100",
    )  # fmt: skip
    assert job_config("--partition-seconds", "120").partition_keys()[0] == 3_000
    # not a float product's ceiling (0.1 x 300 = 30.000000000000004), but at least 100
    assert derived_partition_keys(0.1, 3_000) == 300
    assert derived_partition_keys(33.3, 301) == 10_024  # 10,023.3 rounded up
    assert job_config("--images-per-task-second", "0.1").partition_keys()[0] == 100
    assert (
        job_config("--images-per-task-second", "0.2", "--partition-seconds", "60").partition_keys()[
            0
        ]
        == 100
    )
    # an int8 pipeline only sets its higher rate: bigger partitions of the same five minutes
    assert job_config("--images-per-task-second", "86").partition_keys()[0] == 25_800


def test_an_explicit_max_partition_keys_wins_over_the_derived_bound():
    config = job_config("--max-partition-keys", "20000", "--images-per-task-second", "86")
    assert config.partition_keys() == (20_000, "--max-partition-keys")
    # a test's tiny partitions: an explicit bound below the derived minimum is the job's to take
    assert job_config("--max-partition-keys", "10").partition_keys()[0] == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-partition-keys", "0"], "invalid max_partition_keys: 0"),
        (["--partition-seconds", "0"], "invalid partition_seconds: 0"),
        (["--images-per-task-second", "0"], "invalid images_per_task_second: 0.0"),
        (["--images-per-task-second", "fast"], "--images-per-task-second: invalid float value"),
    ],
)
def test_partition_bound_settings_are_checked_naming_them(extra, message, capsys):
    with pytest.raises(SystemExit):
        parse_config(REQUIRED + extra)
    assert message in capsys.readouterr().err


def test_systemic_errors_are_found_in_a_spark_failure():
    text = (
        "py4j.protocol.Py4JJavaError: ... PythonException: Traceback ...\n"
        "batch_inference.errors.OutputWriteError: cannot write s3://b/o/part-00001.jsonl: denied\n"
    )
    assert systemic_cause(text) == (
        "the output could not be written: cannot write s3://b/o/part-00001.jsonl: denied"
    )
    assert systemic_cause("ValueError: something else") is None
    limit = "batch_inference.errors.WorkerLimitError: cannot start prefetch thread (can't start"
    assert systemic_cause(limit + " new thread): ...\n").startswith(
        "a Python worker ran out of its limits: cannot start prefetch thread"
    )


def metrics(partition: int, rows: int, errors: dict[str, int]) -> dict:
    return {"partition": partition, "rows": rows, "errors": sum(errors.values()),
            "errors_by_type": errors}  # fmt: skip


def test_summary_adds_up_and_fails_above_the_error_rate():
    parts = [metrics(0, 50, {"corrupt_image": 2}), metrics(1, 50, {"corrupt_image": 1, "x": 2})]
    summary = summarise(parts, total=100, partitions=2, max_error_rate=0.05)
    assert summary["errors"] == 5 and summary["predicted"] == 95
    assert summary["errors_by_type"] == {"corrupt_image": 3, "x": 2}
    assert (summary["resumed_partitions"], summary["resumed_rows"]) == (0, 0)
    resumed = summarise([{**parts[0], "resumed": True}, parts[1]], 100, 2, max_error_rate=0.05)
    assert (resumed["resumed_partitions"], resumed["resumed_rows"]) == (1, 50)
    with pytest.raises(JobFailed, match=r"error rate 5.00% \(5 of 100 rows\) is above"):
        summarise(parts, total=100, partitions=2, max_error_rate=0.04)


def test_summary_measures_the_images_per_task_second():
    """Rows over the partitions' task seconds: what estimate.images_per_task_second models."""
    parts = [
        {**metrics(0, 600, {}), "wall_seconds": 20.0},
        {**metrics(1, 400, {}), "wall_seconds": 20.0, "resumed": True},  # an earlier attempt's
    ]
    assert summarise(parts, 1000, 2, max_error_rate=0)["images_per_task_second"] == 25.0
    untimed = [metrics(0, 10, {})]
    assert summarise(untimed, 10, 1, max_error_rate=0)["images_per_task_second"] is None


def test_summary_fails_on_missing_partitions_or_rows():
    with pytest.raises(JobFailed, match="expected metrics of partitions 0..2"):
        summarise([metrics(0, 5, {}), metrics(2, 5, {})], total=15, partitions=3, max_error_rate=1)
    with pytest.raises(JobFailed, match="wrote 10 rows but the manifest lists 11 keys"):
        summarise([metrics(0, 5, {}), metrics(1, 5, {})], total=11, partitions=2, max_error_rate=1)


def test_the_driver_names_what_its_interpreter_lacks(monkeypatch):
    from batch_inference import environment
    from batch_inference.errors import JobFailed

    found = environment.check_environment()
    assert set(found) == {"mxnet", "numpy", "pillow", "boto3"}
    assert environment.check_environment([f"boto3=={found['boto3']}"]) == found
    with pytest.raises(JobFailed, match=r"boto3 is .*, expected 0\.0\.1"):
        environment.check_environment(["boto3==0.0.1"])
    real = environment.importlib.util.find_spec
    monkeypatch.setattr(
        environment.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "PIL" else real(name, *a),
    )
    with pytest.raises(JobFailed, match=r"lacks what the job needs: pillow is missing \(check"):
        environment.check_environment()


def test_the_udf_engine_also_needs_pandas_and_pyarrow(monkeypatch):
    from batch_inference import environment
    from batch_inference.errors import JobFailed

    pytest.importorskip("pyarrow", reason="predict_batch_udf is local-only: EMR nodes lack it")
    found = environment.check_environment(engine="predict_batch_udf")
    assert set(found) == {"mxnet", "numpy", "pillow", "boto3", "pandas", "pyarrow"}
    real = environment.importlib.util.find_spec
    monkeypatch.setattr(
        environment.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyarrow" else real(name, *a),
    )
    assert "pyarrow" not in environment.check_environment()  # the rdd engine does not need it
    with pytest.raises(JobFailed, match=r"pyarrow is missing \(needed by --engine predict_batch"):
        environment.check_environment(engine="predict_batch_udf")


def test_each_runtime_needs_its_own_package_and_only_that(monkeypatch):
    from batch_inference import environment
    from batch_inference.errors import JobFailed

    real = environment.importlib.util.find_spec
    monkeypatch.setattr(
        environment.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("mxnet", "onnxruntime") else real(name, *a),
    )
    for runtime in ("mxnet", "onnxruntime"):  # the other runtime's absence is no problem
        with pytest.raises(
            JobFailed,
            match=r"lacks what the job needs: " + runtime + r" is "
            r"missing \(needed by --runtime " + runtime + r"\) \(check",
        ):
            environment.check_environment(runtime=runtime)  # fmt: skip
    monkeypatch.setattr(environment.importlib.util, "find_spec", real)
    pytest.importorskip("onnxruntime", reason="emr-7.2.0 EMR nodes lack it")
    found = environment.check_environment(runtime="onnxruntime")
    assert set(found) == {"onnxruntime", "numpy", "pillow", "boto3"}


def test_require_is_repeatable():
    config = parse_config([*REQUIRED, "--require", "mxnet==1.9.1", "--require", "boto3==1.42.97"])
    assert config.requirements == ("mxnet==1.9.1", "boto3==1.42.97")


@pytest.mark.parametrize(
    ("have", "wanted", "same"),
    [
        ("1.9.1", "1.9.1", True),
        ("1.9.1.post0", "1.9.1", True),
        ("1.9.1-amzn-0", "1.9.1", True),  # EMR's builds carry such suffixes
        ("1.9.10", "1.9.1", False),
        ("1.42.9", "1.42.97", False),
    ],
)
def test_a_build_of_the_expected_release_is_accepted(have, wanted, same):
    from batch_inference.environment import same_release

    assert same_release(have, wanted) is same


@pytest.mark.parametrize(
    ("partition", "first_index", "end_index", "fingerprint"),
    [(4, 20, 40, "f"), (3, 21, 40, "f"), (3, 20, 39, "f"), (3, 20, 41, "f"), (3, 20, 40, "g")],
    ids=["partition", "first_index", "end_index", "longer range", "fingerprint"],
)
def test_resume_reuses_a_part_only_for_the_same_partition_range_and_fingerprint(
    bucket, s3_env, partition, first_index, end_index, fingerprint
):
    from batch_inference.output import completed_metrics

    output = parse_s3_uri(f"s3://{bucket}/out", prefix=True)
    stored = {"partition": 3, "first_index": 20, "end_index": 40, "fingerprint": "f" * 64}
    for index in (3, 4):  # partition 4's parts hold partition 3's metrics, as a copy would
        write_partition_parts(make_client(), output, index, [], stored, Encryption("none"))
    client = make_client()
    assert completed_metrics(client, output, 3, 20, 40, "f" * 64) == {**stored, "resumed": True}
    changed = completed_metrics(client, output, partition, first_index, end_index, fingerprint * 64)
    assert changed is None


class RecordingS3:
    """An in-memory stand-in for the two S3 calls of ``remove_stale_parts``: a paginated
    ``ListObjectsV2`` that honours ``Prefix`` (pages of ``page_size``) and ``DeleteObjects``."""

    def __init__(self, keys: list[str], page_size: int = 1000) -> None:
        self.keys = set(keys)
        self.page_size = page_size
        self.deletes: list[list[str]] = []

    def get_paginator(self, operation: str):
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str = ""):  # noqa: N803 (boto3's parameter names)
        listed = sorted(key for key in self.keys if key.startswith(Prefix))
        for start in range(0, max(len(listed), 1), self.page_size):
            page = listed[start : start + self.page_size]
            yield {"Contents": [{"Key": key} for key in page]} if page else {"KeyCount": 0}

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:  # noqa: N803
        batch = [item["Key"] for item in Delete["Objects"]]
        self.deletes.append(batch)
        self.keys -= set(batch)
        return {}


def test_stale_parts_are_deleted_in_batches_of_at_most_1000_keys():
    stale = [f"out/{part_name(p)}" for p in range(2, 1003)]  # 1001 parts
    kept = ["out/part-00000.jsonl", "out/part-00001.jsonl", "xyz/part-00009.jsonl"]
    client = RecordingS3(stale + kept, page_size=400)
    removed = remove_stale_parts(client, parse_s3_uri("s3://b/out", prefix=True), 2)
    assert sorted(removed) == sorted(stale)
    assert [len(batch) for batch in client.deletes] == [1000, 1]  # DeleteObjects' limit
    assert client.keys == set(kept)  # another prefix of the same length is not touched


def test_no_stale_parts_in_an_empty_output():
    client = RecordingS3([])
    assert remove_stale_parts(client, parse_s3_uri("s3://b/out", prefix=True), 3) == []
    assert client.deletes == []


def test_partition_metrics_count_rows_by_outcome_and_round_seconds_to_milliseconds():
    from batch_inference.output import PartitionMetrics

    metrics = PartitionMetrics(partition=2, first_index=10, end_index=14, fingerprint="f" * 64)
    top = [{"label": "cat", "index": 3, "probability": 0.9}]
    for row in (
        prediction_row("s3://b/0.jpg", top, "m", "r"),
        prediction_row("s3://b/1.jpg", top, "m", "r"),
        error_row("s3://b/2.jpg", {"type": "missing_object", "message": "x"}, "m", "r"),
        error_row("s3://b/3.jpg", {"type": "corrupt_image", "message": "x"}, "m", "r"),
        error_row("s3://b/4.jpg", {"type": "corrupt_image", "message": "x"}, "m", "r"),
    ):
        metrics.count_row(row)
    metrics.download_seconds, metrics.decode_seconds = 1.23449, 0.0006
    metrics.inference_seconds, metrics.wall_seconds = 2.4004, 10.50049
    assert metrics.as_dict() == {
        "partition": 2,
        "rows": 5,
        "predicted": 2,
        "errors": 3,
        "errors_by_type": {"corrupt_image": 2, "missing_object": 1},
        "download_seconds": 1.234,
        "decode_seconds": 0.001,
        "inference_seconds": 2.4,
        "wall_seconds": 10.5,
        "worker_peak_rss_mb": None,
        "worker_peak_address_space_mb": None,
        "precision": "fp32",
        "int8_top1_agreement": None,
        "runtime": "mxnet",
        "conversion_top1_agreement": None,
        "engine": "rdd",
        "first_index": 10,
        "end_index": 14,
        "fingerprint": "f" * 64,
        "resumed": False,
        "worker_environment": None,
    }
    assert list(metrics.as_dict()["errors_by_type"]) == [
        "corrupt_image",
        "missing_object",
    ]  # sorted


def test_parts_carry_their_content_types(bucket, s3_env):
    output = parse_s3_uri(f"s3://{bucket}/out", prefix=True)
    metrics = {"partition": 0, "fingerprint": "f" * 64}
    write_partition_parts(make_client(), output, 0, [], metrics, Encryption("none"))
    client = s3_env.client()
    types = {
        key: client.head_object(Bucket=bucket, Key=f"out/{key}")["ContentType"]
        for key in ("part-00000.jsonl", "_metrics/part-00000.json")
    }
    assert types == {
        "part-00000.jsonl": "application/x-ndjson",
        "_metrics/part-00000.json": "application/json",
    }


def test_a_worker_dying_between_the_two_writes_leaves_no_metrics_part(bucket, s3_env, monkeypatch):
    """The ``exit:K`` fault fires after the rows part and before the metrics part of
    partition K only: the window the metrics-part-last rule protects."""
    from batch_inference import faults

    class WorkerDied(BaseException):
        """Raised instead of ``os._exit``."""

    def fake_exit(code):
        raise WorkerDied(code)

    monkeypatch.setattr(faults.os, "_exit", fake_exit)
    monkeypatch.setattr(faults.logging, "shutdown", lambda: None)
    monkeypatch.setattr(faults, "_attempt", lambda: 0)
    monkeypatch.setenv(faults.FAULT_ENV, "exit:3")
    output = parse_s3_uri(f"s3://{bucket}/out", prefix=True)
    metrics = {"partition": 3, "fingerprint": "f" * 64}
    write_partition_parts(make_client(), output, 2, [], {**metrics, "partition": 2}, Encryption())
    with pytest.raises(WorkerDied):
        write_partition_parts(make_client(), output, 3, [], metrics, Encryption())
    listing = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    assert sorted(item["Key"] for item in listing) == [
        "out/_metrics/part-00002.json",
        "out/part-00002.jsonl",
        "out/part-00003.jsonl",
    ]


def test_rows_are_compact_one_object_per_line():
    top = [{"label": "a b", "index": 1, "probability": 0.5}]
    body = encode_rows([prediction_row("s3://b/x y.jpg", top, "m", "r")]).decode("utf-8")
    # No space after separators: the only spaces are the ones inside the values.
    assert body.count(" ") == 2 and ", " not in body and '": ' not in body
