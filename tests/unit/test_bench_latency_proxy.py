"""The benchmark latency proxy forwards S3 traffic faithfully, adds latency, stops by itself."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import boto3
import pytest

from bench.latency_proxy import LatencyProxy
from emr_inference_tools.local_s3 import DUMMY_CREDENTIALS, LocalS3


def _client(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def test_forwards_put_get_head_list_delete(s3_server: LocalS3, bucket: str) -> None:
    body = bytes(range(256)) * 300  # binary, larger than one socket buffer
    with LatencyProxy(s3_server.endpoint_url, latency=0.0) as proxy:
        client = _client(proxy.endpoint_url)
        client.put_object(Bucket=bucket, Key="a/b.bin", Body=body)
        assert client.get_object(Bucket=bucket, Key="a/b.bin")["Body"].read() == body
        assert client.head_object(Bucket=bucket, Key="a/b.bin")["ContentLength"] == len(body)
        listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
        assert [item["Key"] for item in listed["Contents"]] == ["a/b.bin"]
        with pytest.raises(client.exceptions.NoSuchKey):
            client.get_object(Bucket=bucket, Key="a/missing.bin")
        client.delete_object(Bucket=bucket, Key="a/b.bin")
        assert proxy.requests == 6
    # What went through the proxy really reached the upstream server.
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_forwards_chunked_request_bodies(s3_server: LocalS3, bucket: str) -> None:
    with LatencyProxy(s3_server.endpoint_url, latency=0.0) as proxy:
        parts = urlsplit(proxy.endpoint_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request("PUT", f"/{bucket}/chunked.txt", body=iter([b"hello ", b"world"]))
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200
    stored = s3_server.client().get_object(Bucket=bucket, Key="chunked.txt")["Body"].read()
    assert stored == b"hello world"


def test_adds_latency_to_every_request(s3_server: LocalS3, bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"x")
    with LatencyProxy(s3_server.endpoint_url, latency=0.25) as proxy:
        client = _client(proxy.endpoint_url)
        started = time.monotonic()
        for _ in range(3):
            client.get_object(Bucket=bucket, Key="k")["Body"].read()
        elapsed = time.monotonic() - started
    # A lower bound only (sleeps guarantee it); no upper bound on a shared machine.
    assert elapsed >= 3 * 0.25


def test_stops_by_itself_after_its_lifetime(s3_server: LocalS3) -> None:
    proxy = LatencyProxy(s3_server.endpoint_url, latency=0.0, max_lifetime=0.2).start()
    parts = urlsplit(proxy.endpoint_url)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
        try:
            connection.connect()
        except ConnectionRefusedError:
            break  # nothing listens any more: it stopped
        except ConnectionResetError:
            # The listening socket was closed while this connection waited in its backlog (the
            # proxy is stopping right now): not stopped yet, and not an error; try again.
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    else:
        pytest.fail("the proxy still accepts connections after its lifetime")
    proxy.stop()  # idempotent after it stopped itself


@pytest.mark.parametrize("url", ["https://127.0.0.1:9000", "127.0.0.1:9000", "http://host"])
def test_rejects_bad_upstream_url(url: str) -> None:
    with pytest.raises(ValueError, match="upstream_url"):
        LatencyProxy(url)


def test_serves_the_gets_it_is_given_and_forwards_the_rest(s3_server: LocalS3, bucket: str) -> None:
    from bench.scale import BUCKET, DISTINCT, image_uri, object_server

    serve = object_server(distinct=3)
    with LatencyProxy(s3_server.endpoint_url, latency=0.0, serve=serve) as proxy:
        client = _client(proxy.endpoint_url)
        # keys the emulator does not hold: object n mod 3, so key 4 reads what key 1 reads
        bodies = [
            client.get_object(Bucket=BUCKET, Key=image_uri(n).removeprefix(f"s3://{BUCKET}/"))[
                "Body"
            ].read()
            for n in (1, 4, 2)
        ]
        assert bodies[0] == bodies[1] != bodies[2] and bodies[0].startswith(b"\x89PNG")
        client.put_object(Bucket=bucket, Key="other.txt", Body=b"x")  # forwarded to moto
        assert client.get_object(Bucket=bucket, Key="other.txt")["Body"].read() == b"x"
        assert proxy.requests == 5
    assert serve(f"/{BUCKET}/images/notanumber.png") is None and DISTINCT > 3
    assert s3_server.client().get_object(Bucket=bucket, Key="other.txt")["Body"].read() == b"x"
