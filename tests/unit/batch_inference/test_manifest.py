"""Manifest parsing and the deterministic assignment of manifest positions to partitions."""

from __future__ import annotations

import json

import pytest
from batch_inference.errors import ManifestError
from batch_inference.manifest import (
    Shard,
    iter_keys,
    parse_manifest,
    partition_range,
    read_manifest,
    shards_for_range,
)
from batch_inference.s3io import make_client

from tests.support.job import write_manifest


@pytest.mark.parametrize(("total", "partitions"), [(0, 1), (1, 4), (10, 3), (1000, 7), (99, 99)])
def test_partition_ranges_cover_every_position_exactly_once(total, partitions):
    ranges = [partition_range(p, partitions, total) for p in range(partitions)]
    positions = [i for start, end in ranges for i in range(start, end)]
    assert positions == list(range(total))
    sizes = [end - start for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_partition_range_rejects_an_index_out_of_range():
    with pytest.raises(ValueError, match="partition 3 out of range for 3"):
        partition_range(3, 3, 10)


def test_only_the_shards_covering_a_range_are_selected():
    shards = (Shard("s3://b/0", 4), Shard("s3://b/1", 4), Shard("s3://b/2", 4))
    assert shards_for_range(shards, 3, 9) == [
        (shards[0], 3, 4),
        (shards[1], 0, 4),
        (shards[2], 0, 1),
    ]
    assert shards_for_range(shards, 4, 8) == [(shards[1], 0, 4)]
    assert shards_for_range(shards, 5, 5) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": 2, "total": 0, "shards": []}, "field 'version' must be 1"),
        ({"version": 1, "total": -1, "shards": []}, "field 'total' must be an integer"),
        ({"version": 1, "total": 0}, "field 'shards' must be a list"),
        ({"version": 1, "total": 1, "shards": [{"uri": 3, "count": 1}]}, r"shards\[0\].uri"),
        ({"version": 1, "total": 1, "shards": [{"uri": "s3://b/k"}]}, r"shards\[0\].count"),
        (
            {"version": 1, "total": 5, "shards": [{"uri": "s3://b/k", "count": 4}]},
            "'total' is 5 but the shard counts add up to 4",
        ),
    ],
)
def test_invalid_manifests_name_the_bad_field(doc, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest("s3://b/manifest.json", json.dumps(doc).encode())


def test_keys_of_a_range_are_read_from_s3_in_manifest_order(bucket, s3_env):
    client = s3_env.client()
    uris = [f"s3://{bucket}/images/{i:03d}.jpg" for i in range(25)]
    manifest_uri = write_manifest(client, bucket, "run", uris, shard_size=10)
    manifest = read_manifest(make_client(), manifest_uri)
    assert manifest.total == 25 and [s.count for s in manifest.shards] == [10, 10, 5]
    assert list(iter_keys(make_client(), manifest, 7, 21)) == uris[7:21]
    assert list(iter_keys(make_client(), manifest, 0, 25)) == uris


def test_a_missing_manifest_or_short_shard_is_a_manifest_error(bucket, s3_env):
    client = s3_env.client()
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(make_client(), f"s3://{bucket}/nope/manifest.json")
    manifest_uri = write_manifest(client, bucket, "run", ["s3://b/a", "s3://b/b"], shard_size=5)
    client.put_object(Bucket=bucket, Key="run/shard-00000.txt", Body=b"s3://b/a\n")
    manifest = read_manifest(make_client(), manifest_uri)
    with pytest.raises(ManifestError, match="has 1 keys, the manifest says 2"):
        list(iter_keys(make_client(), manifest, 0, 2))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"version": 1, "total": "3", "shards": []}', "field 'total' must be an integer >= 0"),
        (b'{"version": 1, "total": 1, "shards": ["s3://b/k"]}', r"shards\[0\] must be an object"),
        (
            b'{"version": 1, "total": 0, "shards": [{"uri": "s3://b/k", "count": -1}]}',
            r"shards\[0\].count must be an integer >= 0",
        ),
    ],
)
def test_malformed_manifest_documents_are_refused(body, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest("s3://b/manifest.json", body)


def test_a_valid_manifest_keeps_its_source_shards_and_digest():
    import hashlib

    body = json.dumps(
        {"version": 1, "total": 3, "source": "s3://b/in/",
         "shards": [{"uri": "s3://b/0", "count": 0}, {"uri": "s3://b/1", "count": 3}]}
    ).encode()  # fmt: skip
    manifest = parse_manifest("s3://b/manifest.json", body)
    assert manifest.uri == "s3://b/manifest.json" and manifest.source == "s3://b/in/"
    assert manifest.total == 3
    assert manifest.shards == (Shard("s3://b/0", 0), Shard("s3://b/1", 3))
    assert manifest.sha256 == hashlib.sha256(body).hexdigest()


def test_empty_shards_and_negative_partitions_are_never_selected():
    shards = (Shard("s3://b/0", 4), Shard("s3://b/empty", 0), Shard("s3://b/2", 4))
    assert shards_for_range(shards, 0, 8) == [(shards[0], 0, 4), (shards[2], 0, 4)]
    assert shards_for_range(shards, 4, 4) == []
    with pytest.raises(ValueError, match="partition -1 out of range for 3"):
        partition_range(-1, 3, 10)


def test_an_unreadable_shard_is_a_manifest_error_naming_it(bucket, s3_env):
    client = s3_env.client()
    manifest_uri = write_manifest(client, bucket, "run", ["s3://b/a"], shard_size=5)
    client.delete_object(Bucket=bucket, Key="run/shard-00000.txt")
    manifest = read_manifest(make_client(), manifest_uri)
    with pytest.raises(ManifestError, match=r"cannot read manifest shard s3://.*shard-00000\.txt"):
        list(iter_keys(make_client(), manifest, 0, 1))
