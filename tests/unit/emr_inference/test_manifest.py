"""stage_manifest: streamed, sharded manifests from a real (moto server) S3 listing."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from emr_inference.manifest import ManifestError, matching_keys, validate_manifest
from emr_inference.operators.manifest import StageManifestOperator
from emr_inference.request import resolve_request
from emr_inference.s3 import S3Uri, s3_hook

from tests.unit.emr_inference.conftest import put_objects
from tests.unit.emr_inference.pipeline_fixtures import pipeline


def _request(bucket: str, **params) -> dict:
    """A resolved request over the image bucket, staged under a prefix of its own."""
    config = pipeline(
        input_uri=f"s3://{bucket}/images/",
        output_uri=f"s3://{bucket}/out/dt={{{{ partition_date }}}}/",
        staging_uri=f"s3://{bucket}/_staging/{uuid.uuid4().hex}/",
        extensions=[".jpg", ".png"],
        shard_size=500,
        sse={"mode": "AES256"},
    )
    return resolve_request(
        config,
        {"partition_date": "2026-11-22", **params},
        dag_id="unit",
        run_id="manual__1",
        data_interval_end=None,
    ).as_json()


def _stage(request: dict) -> dict:
    """The one date's work item of ``stage_manifest``."""
    (work,) = StageManifestOperator(task_id="stage_manifest", request=request).execute({})
    return work


def _read(s3_env, uri: str) -> bytes:
    parsed = S3Uri.parse(uri, "uri")
    return s3_env.client().get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"].read()


@pytest.fixture(scope="module")
def image_bucket(s3_server) -> str:
    """A bucket with 1,150 images (over two 1,000-key listing pages) and objects to filter out.

    Module-scoped: uploading is the slow part; each test stages under its own prefix.
    """
    bucket = f"images-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    keys = [f"images/{i:05d}.{'JPG' if i % 3 == 0 else 'jpg'}" for i in range(1100)]
    keys += [f"images/png/{i:03d}.png" for i in range(50)]
    noise = ["images/readme.txt", "images/png/", "images/x.jpeg.tmp", "other/0.jpg"]
    put_objects(s3_server, bucket, [(key, b"x") for key in keys + noise])
    return bucket


@pytest.fixture
def bucket(image_bucket: str) -> str:
    """Every test here reads the shared image bucket (and writes a run-specific staging prefix)."""
    return image_bucket


@pytest.fixture
def images(image_bucket: str) -> list[str]:
    """The URIs the manifest must list, in listing order."""
    return sorted(
        f"s3://{image_bucket}/images/{i:05d}.{'JPG' if i % 3 == 0 else 'jpg'}" for i in range(1100)
    ) + [f"s3://{image_bucket}/images/png/{i:03d}.png" for i in range(50)]


def test_stage_manifest_streams_the_listing_into_shards(
    aws_conn: str, bucket: str, images: list[str], s3_env
) -> None:
    request = _request(bucket)
    work = _stage(request)

    manifest_uri = f"{request['staging_uri']}manifest/manifest.json"
    listed_digest = hashlib.sha256("".join(f"{uri}\n" for uri in images).encode()).hexdigest()
    assert work["manifest"] == {
        "manifest_uri": manifest_uri,
        "total": 1150,
        "shards": 3,
        "bytes": 1150,  # one byte each
        "keys_sha256": listed_digest,
        "status": "pending",
    }
    assert work["request"]["partition_date"] == "2026-11-22"
    assert len(work["request"]["request_fingerprint"]) == 64
    manifest = json.loads(_read(s3_env, manifest_uri))
    assert manifest["version"] == 1
    assert manifest["source"] == request["input_uri"]
    assert [s["count"] for s in manifest["shards"]] == [500, 500, 150]
    listed = []
    for shard in manifest["shards"]:
        assert shard["uri"].endswith(f"shard-{len(listed) // 500:05d}.txt")
        text = _read(s3_env, shard["uri"]).decode()
        assert text.endswith("\n")
        listed += text.splitlines()
    assert listed == images  # every match once, in listing order, nothing else
    head = s3_env.client().head_object(Bucket=bucket, Key=manifest_uri.split("/", 3)[3])
    assert head["ServerSideEncryption"] == "AES256"


def test_sample_limit_and_a_retry_leave_no_stale_shards(
    aws_conn: str, bucket: str, images: list[str], s3_env
) -> None:
    first = _request(bucket)
    _stage(first)
    result = _stage({**first, "sample_limit": 1001, "shard_size": 400})["manifest"]
    assert result["total"] == 1001 and result["shards"] == 3
    prefix = first["staging_uri"].split("/", 3)[3] + "manifest/"
    objects = s3_env.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in objects["Contents"]) == [
        "manifest.json",
        "shard-00000.txt",
        "shard-00001.txt",
        "shard-00002.txt",
    ]
    manifest = json.loads(_read(s3_env, result["manifest_uri"]))
    assert [s["count"] for s in manifest["shards"]] == [400, 400, 201]


def test_matching_keys_is_lazy(aws_conn: str, bucket: str, images: list[str]) -> None:
    """The filter is a generator over listing pages: the first key comes before the listing ends."""
    keys = matching_keys(s3_hook(aws_conn), S3Uri(bucket, "images/"), [], None)
    assert next(keys) == images[0]


def test_empty_extension_list_matches_every_object(
    aws_conn: str, bucket: str, images: list[str]
) -> None:
    keys = list(matching_keys(s3_hook(aws_conn), S3Uri(bucket, "images/"), [], None))
    assert len(keys) == 1150 + 2  # readme.txt and x.jpeg.tmp; the folder marker never matches


def test_supplied_manifest_is_validated_and_passed_through(
    aws_conn: str, bucket: str, images: list[str], s3_env
) -> None:
    staged = _stage(_request(bucket))["manifest"]
    request = _request(bucket, manifest_uri=staged["manifest_uri"])
    supplied = _stage(request)["manifest"]
    kept = ("manifest_uri", "total", "shards", "status")
    assert {k: supplied[k] for k in kept} == {k: staged[k] for k in kept}
    assert supplied["bytes"] is None  # a supplied manifest's objects are not listed

    client = s3_env.client()
    broken = {"version": 1, "total": 5, "shards": [{"uri": f"s3://{bucket}/nope.txt", "count": 5}]}
    client.put_object(Bucket=bucket, Key="m/bad.json", Body=json.dumps(broken))
    with pytest.raises(
        ManifestError, match=r"manifest_uri: shards\[0\]: .*nope.txt does not exist"
    ):
        validate_manifest(s3_hook(aws_conn), f"s3://{bucket}/m/bad.json")
    broken["shards"][0]["uri"] = staged["manifest_uri"].replace("manifest.json", "shard-00000.txt")
    broken["shards"][0]["count"] = 500
    client.put_object(Bucket=bucket, Key="m/bad.json", Body=json.dumps(broken))
    with pytest.raises(ManifestError, match="'total' is 5 but the shard counts add up to 500"):
        validate_manifest(s3_hook(aws_conn), f"s3://{bucket}/m/bad.json")
    with pytest.raises(ManifestError, match="manifest_uri: .* does not exist"):
        validate_manifest(s3_hook(aws_conn), f"s3://{bucket}/m/missing.json")
    client.put_object(Bucket=bucket, Key="m/text.json", Body=b"not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        validate_manifest(s3_hook(aws_conn), f"s3://{bucket}/m/text.json")


def test_empty_input_is_an_empty_date(aws_conn: str, bucket: str) -> None:
    work = _stage(_request(bucket, input_uri=f"s3://{bucket}/no-such-prefix/"))
    assert work["manifest"]["total"] == 0 and work["manifest"]["shards"] == 0
    assert work["manifest"]["status"] == "empty"


def test_every_date_of_a_range_gets_its_own_manifest(aws_conn: str, bucket: str) -> None:
    request = _request(bucket, date_range={"start": "2026-11-20", "end": "2026-11-22"})
    works = StageManifestOperator(task_id="stage_manifest", request=request).execute({})
    assert [w["request"]["partition_date"] for w in works] == [
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
    ]
    manifests = [w["manifest"]["manifest_uri"] for w in works]
    assert len(set(manifests)) == 3
    assert all(f"/{w['request']['partition_date']}/manifest/" in w["manifest"]["manifest_uri"]
               for w in works)  # fmt: skip
    assert [w["request"]["output_uri"] for w in works] == [
        f"s3://{bucket}/out/dt=2026-11-{day}/" for day in (20, 21, 22)
    ]


def test_a_date_published_for_the_same_request_is_not_redone(
    aws_conn: str, bucket: str, s3_env
) -> None:
    """Only a complete publication (``_SUCCESS``) of the same request fingerprint by another run
    counts; a cleared run redoes its own dates, and ``republish`` redoes every date."""
    request = _request(bucket, output_uri=f"s3://{bucket}/out-{uuid.uuid4().hex}/")
    work = _stage(request)
    output = S3Uri.parse(work["request"]["output_uri"], "output_uri")
    client = s3_env.client()
    summary = {"request_fingerprint": work["request"]["request_fingerprint"], "run_id": "earlier"}
    client.put_object(
        Bucket=bucket, Key=output.key + "_run_summary.json", Body=json.dumps(summary).encode()
    )
    assert _stage(request)["manifest"]["status"] == "pending"  # no _SUCCESS yet
    client.put_object(Bucket=bucket, Key=output.key + "_SUCCESS", Body=b"")
    assert _stage(request)["manifest"]["status"] == "published"
    assert _stage({**request, "republish": True})["manifest"]["status"] == "pending"
    assert _stage({**request, "run_id": "earlier"})["manifest"]["status"] == "pending"
    # how the work is split and run changes no row: still published
    layout = {"batch_size": 7, "partitions": 3, "max_partition_keys": 200, "prefetch_threads": 2}
    assert _stage({**request, **layout})["manifest"]["status"] == "published"
    # what shapes the rows does: another top_k, model preprocessing or precision is redone
    other = {**request, "top_k": request["top_k"] + 1}
    assert _stage(other)["manifest"]["status"] == "pending"
    resized = {**request, "model": {**request["model"], "image_size": 96}}
    assert _stage(resized)["manifest"]["status"] == "pending"
