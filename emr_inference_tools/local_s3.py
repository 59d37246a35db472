"""A real S3 endpoint on loopback for the demo, the tests and the benchmarks.

Runs moto's S3 server (``moto.server``) as a child process on 127.0.0.1. Everything that talks to
S3 (boto3 in Airflow tasks, in the Spark driver and in Spark's Python workers) is pointed at it with
``AWS_ENDPOINT_URL_S3``, which botocore honours, plus dummy credentials.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalS3:
    """A running moto S3 server and the environment that points clients at it."""

    endpoint_url: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that make boto3 (and its subprocesses) use this endpoint."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint_url}

    def client(self):
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def reset(self) -> None:
        """Drop every bucket and object (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        """Stop the server process."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_local_s3(port: int | None = None, timeout: float = 30.0) -> LocalS3:
    """Start moto's S3 server on 127.0.0.1 and wait until it answers."""
    port = port or free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return serve(command, port, timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve(command: list[str], port: int, timeout: float, **popen_kwargs) -> LocalS3:
    """Run ``command`` (a server that will listen on 127.0.0.1:``port``) with the dummy AWS
    credentials; return once its moto API answers, or stop it and raise."""
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(command, env={**os.environ, **DUMMY_CREDENTIALS}, **popen_kwargs)
    server = LocalS3(endpoint_url=endpoint, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"S3 server {command[2]} exited with code {process.returncode}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"S3 server {command[2]} did not answer on {endpoint} within {timeout:.0f}s")


@contextmanager
def local_s3(port: int | None = None) -> Iterator[LocalS3]:
    """Context manager: a moto S3 server for the duration of the block."""
    server = start_local_s3(port)
    try:
        yield server
    finally:
        server.stop()
