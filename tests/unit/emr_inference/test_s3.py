"""S3 URI validation, SSE arguments and the S3Hook helpers against the moto S3 server."""

from __future__ import annotations

import re

import pytest
from emr_inference import s3
from emr_inference.s3 import S3Uri, S3UriError, s3_hook, sse_extra_args


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://my-bucket/images/dt=2026-11-22/", "my-bucket", "images/dt=2026-11-22/"),
        ("s3://my.bucket.1/a/b.jpg", "my.bucket.1", "a/b.jpg"),
        ("s3://abc", "abc", ""),
        ("s3://abc/", "abc", ""),
    ],
)
def test_parse_accepts_valid_uris(uri: str, bucket: str, key: str) -> None:
    parsed = S3Uri.parse(uri, "input_uri")
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert parsed.uri == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://bucket/key", "expected an s3://bucket/key URI"),
        ("s3a://bucket/key", "expected an s3://bucket/key URI"),
        ("s3://Bucket/key", "not a valid S3 bucket name"),
        ("s3://ab/key", "not a valid S3 bucket name"),
        ("s3://bucket_x/key", "not a valid S3 bucket name"),
        ("s3://my..bucket/key", "not a valid S3 bucket name"),
        ("s3://192.168.1.1/key", "not a valid S3 bucket name"),
        ("s3://-bucket/key", "not a valid S3 bucket name"),
        ("s3://bucket/a//b", "empty, '.' or '..' path segment"),
        ("s3://bucket//a", "empty, '.' or '..' path segment"),
        ("s3://bucket/a/../b", "empty, '.' or '..' path segment"),
        ("s3://bucket/./b/", "empty, '.' or '..' path segment"),
        (None, "expected an s3://bucket/key URI"),
        ("S3://bucket/key", "expected an s3://bucket/key URI"),
        ("file:///etc/passwd", "expected an s3://bucket/key URI"),
        ("s3:/bucket/key", "expected an s3://bucket/key URI"),
        (" s3://bucket/key", "expected an s3://bucket/key URI"),
        ("s3://bucket\n/key", "not a valid S3 bucket name"),
        ("s3://bucket/../key", "empty, '.' or '..' path segment"),
        ("s3://bucket/a/..", "empty, '.' or '..' path segment"),
        ("s3://bucket/a\nb", "contains a control character"),
        ("s3://bucket/a\rb/", "contains a control character"),
        ("s3://bucket/a\x00b", "contains a control character"),
        ("s3://bucket/a\x1b[31mb", "contains a control character"),
        ("s3://bucket/a\x7f", "contains a control character"),
        ("s3://bucket/" + "k" * 1025, "longer than 1024 bytes"),
        ("s3://bucket/" + "é" * 513, "longer than 1024 bytes"),
    ],
)
def test_parse_rejects_bad_uris_naming_the_field(uri: str, reason: str) -> None:
    with pytest.raises(S3UriError, match=f"^output_uri: .*{re.escape(reason)}"):
        S3Uri.parse(uri, "output_uri")


def test_parse_checks_prefix_or_object() -> None:
    with pytest.raises(S3UriError, match="staging_uri: .* must be a prefix ending in '/'"):
        S3Uri.parse("s3://bucket/staging", "staging_uri", prefix=True)
    with pytest.raises(S3UriError, match="manifest_uri: .* must name an object"):
        S3Uri.parse("s3://bucket/m/", "manifest_uri", prefix=False)


def test_join() -> None:
    base = S3Uri.parse("s3://bucket/run/", "staging_uri")
    assert (
        base.join("manifest/", "shard-00000.txt").uri == "s3://bucket/run/manifest/shard-00000.txt"
    )
    with pytest.raises(S3UriError, match="not a prefix"):
        S3Uri("bucket", "run/a.json").join("b")


@pytest.mark.parametrize(
    ("sse", "expected"),
    [
        (None, {}),
        ({"mode": "none", "kms_key_id": None}, {}),
        ({"mode": "AES256"}, {"ServerSideEncryption": "AES256"}),
        ({"mode": "aws:kms"}, {"ServerSideEncryption": "aws:kms"}),
        (
            {"mode": "aws:kms", "kms_key_id": "alias/x"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x"},
        ),
    ],
)
def test_sse_extra_args(sse, expected) -> None:
    assert sse_extra_args(sse) == expected


def test_sse_extra_args_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="sse.mode"):
        sse_extra_args({"mode": "aes"})
    with pytest.raises(ValueError, match="kms_key_id is only valid with mode"):
        sse_extra_args({"mode": "AES256", "kms_key_id": "k"})


def test_hook_helpers_write_encrypted_objects(aws_conn: str, bucket: str, s3_env) -> None:
    """Writes and copies through the hook carry the SSE arguments (moto records them)."""
    hook = s3_hook(aws_conn, {"mode": "AES256"})
    base = S3Uri(bucket, "x/")
    s3.write_json(hook, base.join("a.json"), {"n": 1})
    s3.copy(hook, base.join("a.json"), base.join("b.json"))
    client = s3_env.client()
    for key in ("x/a.json", "x/b.json"):
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    assert s3.read_json(hook, base.join("b.json")) == {"n": 1}
    assert s3.exists(hook, base.join("a.json"))
    assert not s3.exists(hook, base.join("missing.json"))
    assert [e["Key"] for e in s3.iter_objects(hook, base)] == ["x/a.json", "x/b.json"]
    s3.delete(hook, bucket, ["x/a.json"])
    assert [e["Key"] for e in s3.iter_objects(hook, base)] == ["x/b.json"]


def test_hook_uses_the_connection_endpoint(
    aws_conn: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no AWS_ENDPOINT_URL_S3 in the environment the connection's endpoint_url is used."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    hook = s3_hook(aws_conn)
    s3.write_bytes(hook, S3Uri(bucket, "k"), b"v")
    assert s3.read_text(hook, S3Uri(bucket, "k")) == "v"
