"""S3 URIs and encryption as both sides use them (batch_inference.contract.s3)."""

from __future__ import annotations

import pytest
from batch_inference.contract.s3 import S3Uri, S3UriError, encryption_args, parse_s3_uri


@pytest.mark.parametrize(
    ("uri", "prefix", "expected"),
    [
        ("s3://b/run/out", False, S3Uri("b", "run/out")),
        ("s3a://b/run/out", True, S3Uri("b", "run/out/")),
        ("s3n://b/run/out/", True, S3Uri("b", "run/out/")),
        ("s3://b", True, S3Uri("b", "")),
        ("s3://b/a//b.jpg", False, S3Uri("b", "a//b.jpg")),  # a listed key may be anything
    ],
)
def test_the_job_reads_uris_leniently(uri, prefix, expected):
    assert parse_s3_uri(uri, "--output", prefix=prefix) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [("gs://b/k", "--output must be an s3:// URI"), ("s3:///k", "--output has no bucket")],
)
def test_the_lenient_rule_still_needs_s3_and_a_bucket(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_s3_uri(uri, "--output")


def test_the_lenient_rule_splits_at_the_first_scheme_separator_and_names_a_uri_by_default():
    assert parse_s3_uri("s3://b/k://x") == S3Uri("b", "k://x")
    with pytest.raises(ValueError, match="^URI must be an s3:// URI"):
        parse_s3_uri("gs://b/k")


def test_people_write_uris_by_the_strict_rule():
    assert S3Uri.parse("s3://bucket/run/", "staging_uri", prefix=True) == S3Uri("bucket", "run/")
    for uri in ("s3a://bucket/run/", "s3://bucket/a//b", "s3://bucket/a//", "s3://Bucket/x"):
        with pytest.raises(S3UriError, match="staging_uri: "):
            S3Uri.parse(uri, "staging_uri")


def test_join_builds_below_a_prefix_only():
    assert parse_s3_uri("s3://b/out", prefix=True).join("_metrics/", "part-00000.json") == S3Uri(
        "b", "out/_metrics/part-00000.json"
    )
    assert S3Uri("b", "int8/").join("key", "").key == "int8/key/"
    with pytest.raises(S3UriError, match="not a prefix"):
        parse_s3_uri("s3://b/out").join("part-00000.jsonl")


@pytest.mark.parametrize(
    ("mode", "key", "expected"),
    [
        (None, None, {}),
        ("none", None, {}),
        ("AES256", None, {"ServerSideEncryption": "AES256"}),
        ("aws:kms", None, {"ServerSideEncryption": "aws:kms"}),
        ("aws:kms", "alias/k", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}),
    ],
)
def test_encryption_arguments_of_every_mode(mode, key, expected):
    assert encryption_args(mode, key) == expected


def test_encryption_refuses_an_unknown_mode_or_a_key_without_kms():
    with pytest.raises(ValueError, match="sse.mode: expected one of none, AES256, aws:kms"):
        encryption_args("aes")
    with pytest.raises(ValueError, match="kms_key_id is only valid with mode 'aws:kms'"):
        encryption_args("AES256", "k")


@pytest.mark.parametrize(
    "bucket",
    ["my.-bucket", "my-.bucket", "xn--bucket", "sthree-bucket", "bucket-s3alias", "bucket--ol-s3"],
)
def test_the_strict_rule_refuses_every_reserved_bucket_name(bucket):
    with pytest.raises(S3UriError, match=f"output_uri: '{bucket}' .* not a valid S3 bucket name"):
        S3Uri.parse(f"s3://{bucket}/key", "output_uri")
    assert S3Uri.parse(f"s3://a{bucket.replace('-', '')}/key", "output_uri").key == "key"
