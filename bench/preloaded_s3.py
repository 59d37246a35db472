"""A moto S3 server whose buckets are filled before it starts serving.

moto's server handles about 350 PUTs/s on this machine (one Python process, GIL-bound), so
uploading the 120k objects the listing and memory benchmarks need over HTTP would take most of the
15-minute budget. Instead this module, run as a child process, writes the objects straight into
moto's in-memory backend and then serves them over HTTP exactly like
``emr_inference_tools.local_s3`` does:
everything the benchmarks *measure* still goes through a real S3 endpoint over loopback.

    python -m bench.preloaded_s3 --port 5000 --dataset photo:bench:photos/:2000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from bench.dataset import photo_jpeg, tiny_png
from emr_inference_tools.local_s3 import DUMMY_CREDENTIALS, LocalS3, free_port, serve

log = logging.getLogger(__name__)

MAKERS = {"photo": (photo_jpeg, ".jpg"), "tiny": (tiny_png, ".png")}


@dataclass(frozen=True)
class Dataset:
    """``count`` generated objects of ``kind`` (photo | tiny) at ``s3://bucket/prefix<index>.ext``."""

    kind: str
    bucket: str
    prefix: str
    count: int

    def __post_init__(self) -> None:
        if self.kind not in MAKERS:
            raise ValueError(f"dataset kind must be one of {sorted(MAKERS)}, got {self.kind!r}")
        if self.count < 0:
            raise ValueError(f"dataset count must be >= 0, got {self.count}")

    @classmethod
    def parse(cls, text: str) -> Dataset:
        """Parse ``kind:bucket:prefix:count``."""
        parts = text.split(":")
        if len(parts) != 4 or not parts[3].isdigit():
            raise ValueError(f"--dataset must be kind:bucket:prefix:count, got {text!r}")
        kind, bucket, prefix, count = parts
        return cls(kind, bucket, prefix, int(count))

    def __str__(self) -> str:
        return f"{self.kind}:{self.bucket}:{self.prefix}:{self.count}"

    def key(self, index: int) -> str:
        """The object key of item ``index``."""
        return f"{self.prefix}{index:08d}{MAKERS[self.kind][1]}"

    @property
    def uri(self) -> str:
        """The S3 prefix holding the dataset."""
        return f"s3://{self.bucket}/{self.prefix}"


def _make(kind: str, index: int) -> bytes:
    return MAKERS[kind][0](index)


def preload(datasets: Sequence[Dataset]) -> None:
    """Write every dataset into moto's in-memory S3 backend of this process."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for dataset in datasets:
            started = time.monotonic()
            if dataset.bucket not in backend.buckets:
                backend.create_bucket(dataset.bucket, DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"])
            kinds = [dataset.kind] * dataset.count
            bodies = pool.map(_make, kinds, range(dataset.count), chunksize=256)
            for index, body in enumerate(bodies):
                backend.put_object(dataset.bucket, dataset.key(index), body)
            log.info("preloaded %s in %.1f s", dataset, time.monotonic() - started)


def start_preloaded_s3(datasets: Sequence[Dataset], timeout: float = 600.0) -> LocalS3:
    """Start a moto S3 server holding ``datasets``; return once it answers (``.stop()`` it)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.preloaded_s3", "--port", str(port)]
    for dataset in datasets:
        command += ["--dataset", str(dataset)]
    return serve(command, port, timeout)


def main(argv: Sequence[str] | None = None) -> None:
    """Preload the ``--dataset`` objects, then serve S3 on 127.0.0.1:``--port`` until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dataset", type=Dataset.parse, action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s preloaded_s3 %(message)s")
    preload(args.dataset)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    from moto.server import main as moto_server

    moto_server(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
