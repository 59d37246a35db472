"""stage_manifest: streamed, sharded manifests from a real (moto server) S3 listing."""

from __future__ import annotations

import json
import uuid

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped
from emr_inference.manifest import ManifestError, matching_keys, validate_manifest
from emr_inference.operators.manifest import StageManifestOperator
from emr_inference.s3 import S3Uri, s3_hook

from tests.unit.airflow.conftest import put_objects


def _request(bucket: str, **overrides) -> dict:
    return {
        "input_uri": f"s3://{bucket}/images/",
        "manifest_uri": None,
        "staging_uri": f"s3://{bucket}/_staging/{uuid.uuid4().hex}/",
        "extensions": [".jpg", ".png"],
        "sample_limit": None,
        "shard_size": 500,
        "sse": {"mode": "AES256", "kms_key_id": None},
        **overrides,
    }


def _read(s3_env, uri: str) -> bytes:
    parsed = S3Uri.parse(uri, "uri")
    return s3_env.client().get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"].read()


class FakeTI:
    """The one TaskInstance method the empty-input path uses, recording what it pushed."""

    map_index = -1

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


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
    result = StageManifestOperator(task_id="stage_manifest", request=request).execute({})

    manifest_uri = f"{request['staging_uri']}manifest/manifest.json"
    assert result == {"manifest_uri": manifest_uri, "total": 1150, "shards": 3}
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
    StageManifestOperator(task_id="m", request=first).execute({})
    result = StageManifestOperator(
        task_id="m", request={**first, "sample_limit": 1001, "shard_size": 400}
    ).execute({})
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
    staged = StageManifestOperator(task_id="m", request=_request(bucket)).execute({})
    request = _request(bucket, input_uri=None, manifest_uri=staged["manifest_uri"])
    assert StageManifestOperator(task_id="m", request=request).execute({}) == staged

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


def test_empty_input_pushes_the_xcom_and_skips_downstream(aws_conn: str, bucket: str) -> None:
    request = _request(bucket, input_uri=f"s3://{bucket}/no-such-prefix/")
    with DAG("t", schedule=None):
        stage = StageManifestOperator(task_id="stage_manifest", request=request)
        create = StageManifestOperator(task_id="create_cluster", request={}).as_setup()
        publish = StageManifestOperator(task_id="publish_results", request={})
        terminate = StageManifestOperator(task_id="terminate_cluster", request={}).as_teardown(
            setups=create
        )
        stage >> create >> publish >> terminate
    ti = FakeTI()
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        stage.execute({"ti": ti})
    assert sorted(skipped.value.tasks) == ["create_cluster", "publish_results"]
    assert ti.pushed["return_value"]["total"] == 0
    assert ti.pushed["return_value"]["shards"] == 0
