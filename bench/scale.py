"""Scale: the job through ``spark-submit`` over manifests of up to a million keys.

    python -m bench.scale                          # 62,500 / 250,000 / 1,000,000 keys (make scale)
    python -m bench.scale --keys 4000 --keys 16000   # any sizes

Each size is one ``spark-submit --master local[2]`` of the packaged job (tiny digits CNN at 8 px,
8x8 PNGs, batch 256, partitions of at most the default derived 7,500 keys: 25 images per
task-second x 300 s), with its manifest written by the Airflow side's
``emr_inference.manifest.write_manifest`` (10,000-key shards). It reports, per size: the driver's
peak RSS (JVM + Python driver, sampled every 0.5 s), the Python workers' peak
RSS (``worker_peak_rss_mb`` of the metrics parts), the partitions, and the job's seconds per 1,000
keys (from the first partition's start to the last part written, as the run summary's
``job_seconds``). Flat memory and a constant time per key across sizes are what it shows.

**A million distinct keys, a few thousand objects.** moto's server keeps every object in memory
and costs ~3 CPU-ms per GET; a million objects would take it an hour to hold and to serve. So the
manifest names ``images/00000000.png`` ... ``images/00999999.png`` (every key distinct, each
expected exactly once in the output) and a front server in this process
(:class:`bench.latency_proxy.LatencyProxy` with no latency) answers each GET under ``images/``
with object ``n mod 4096`` of :data:`DISTINCT` pre-made PNGs; everything else (manifest, model,
rows and metrics parts, multipart uploads) goes through to moto. The job cannot tell: it reads
every key with its own GET.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.dataset import tiny_png
from bench.latency_proxy import LatencyProxy
from bench.spark_run import job_seconds, metrics_parts, spark_env, spark_submit

log = logging.getLogger("bench.scale")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: distinct objects behind the manifest's keys (key ``n`` reads object ``n mod DISTINCT``)
DISTINCT = 4096
BUCKET, IMAGES = "scale", "images/"
DEFAULT_KEYS = (62_500, 250_000, 1_000_000)
BATCH_SIZE = 256
IMAGE_SIZE = 8


def image_uri(index: int) -> str:
    """The manifest's ``index``-th key."""
    return f"s3://{BUCKET}/{IMAGES}{index:08d}.png"


def object_server(distinct: int = DISTINCT) -> Callable[[str], bytes | None]:
    """``serve(path)`` for :class:`LatencyProxy`: the bytes of ``/scale/images/<n>.png`` (object
    ``n mod distinct``), ``None`` for any other path (forwarded to the emulator)."""
    bodies = [tiny_png(index) for index in range(distinct)]
    prefix = f"/{BUCKET}/{IMAGES}"

    def serve(path: str) -> bytes | None:
        name = path.split("?", 1)[0]
        if not name.startswith(prefix) or not name.endswith(".png"):
            return None
        number = name[len(prefix) : -len(".png")]
        return bodies[int(number) % distinct] if number.isdigit() else None

    return serve


@dataclass(frozen=True)
class ScaleRun:
    """What one size took."""

    keys: int
    partitions: int
    rows: int
    wall_seconds: float
    job_seconds: float
    driver_peak_mib: float
    worker_peak_mib: int

    @property
    def seconds_per_1000_keys(self) -> float:
        """The job's seconds per 1,000 keys (without the driver's start-up)."""
        return 1000 * self.job_seconds / self.keys


class ScaleBench:
    """A preloaded emulator, the tiny model, the job zip and the front server, for several sizes."""

    def __init__(self, s3, workdir: Path) -> None:
        from batch_inference.package import ENTRY_POINT, build_job_zip

        from emr_inference_tools.demo.models import train_digits_classifier, upload_model

        self.s3, self.workdir = s3, workdir
        self.client = s3.client()
        self.client.create_bucket(Bucket=BUCKET)
        model = train_digits_classifier(workdir / "digits", image_size=IMAGE_SIZE, epochs=1)
        self.model = upload_model(self.client, model, BUCKET, "model")
        self.job_zip = build_job_zip(workdir / "batch_inference.zip")
        self.entry_point = Path(shutil.copy(ENTRY_POINT, workdir / ENTRY_POINT.name))
        self.front = LatencyProxy(s3.endpoint_url, latency=0.0, serve=object_server())

    def __enter__(self) -> ScaleBench:
        self.front.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.front.stop()

    def manifest(self, keys: int) -> str:
        """Write the manifest of the first ``keys`` keys with the Airflow side's code."""
        from emr_inference.manifest import write_manifest
        from emr_inference.s3 import S3Uri, s3_hook

        source = S3Uri.parse(f"s3://{BUCKET}/{IMAGES}", "source")
        dest = S3Uri.parse(f"s3://{BUCKET}/manifests/{keys}/", "dest")
        uris = (image_uri(index) for index in range(keys))
        return write_manifest(s3_hook(None), source, uris, dest, 10_000).manifest_uri

    def run(
        self,
        keys: int,
        master: str = "local[2]",
        timeout: float = 3600.0,
        job_args: Sequence[str] = (),
    ) -> ScaleRun:
        """One ``spark-submit`` over ``keys`` keys (``job_args``: more of the job's arguments);
        raises if any key is missing from the rows."""
        from emr_inference.job_command import model_arguments

        manifest_uri, output = self.manifest(keys), f"scale-{keys}/"
        app = [
            str(self.entry_point),
            f"--manifest={manifest_uri}",
            f"--output=s3://{BUCKET}/{output}",
            f"--run-id=scale-{keys}",
            f"--batch-size={BATCH_SIZE}",
            *model_arguments(self.model),
            *job_args,
        ]
        env = spark_env({**self.s3.env, "AWS_ENDPOINT_URL_S3": self.front.endpoint_url})
        run = spark_submit(
            app,
            env,
            self.workdir / f"scale-{keys}.log",
            master,
            py_files=[self.job_zip],
            timeout=timeout,
            sample_interval=0.5,
        )
        parts = list(metrics_parts(self.client, BUCKET, f"{output}_metrics/"))
        rows = sum(part["rows"] for part, _ in parts)
        if rows != keys:
            raise RuntimeError(f"{keys} keys gave {rows} rows; see {self.workdir}")
        return ScaleRun(
            keys=keys,
            partitions=len(parts),
            rows=rows,
            wall_seconds=run.wall_seconds,
            job_seconds=job_seconds(parts),
            driver_peak_mib=run.driver_peak_rss / 2**20,
            worker_peak_mib=max(part["worker_peak_rss_mb"] for part, _ in parts),
        )


def table(runs: list[ScaleRun]) -> str:
    """The runs as a Markdown table, growth relative to the smallest."""
    first = runs[0]
    lines = [
        "| keys | partitions | wall s | job s | job s / 1,000 keys | driver peak MiB "
        "| Python worker peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.keys:,} | {run.partitions} | {run.wall_seconds:.0f} | {run.job_seconds:.0f} "
            f"| {run.seconds_per_1000_keys:.2f} "
            f"({run.seconds_per_1000_keys / first.seconds_per_1000_keys:.2f}x) "
            f"| {run.driver_peak_mib:.0f} ({run.driver_peak_mib / first.driver_peak_mib - 1:+.1%}) "
            f"| {run.worker_peak_mib} ({run.worker_peak_mib / first.worker_peak_mib - 1:+.1%}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run each size (smallest first) and print the table."""
    from bench.int8 import cpu_description
    from emr_inference_tools.local_s3 import local_s3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, action="append", help="a manifest size (repeatable)")
    args = parser.parse_args(argv)
    sizes = sorted(args.keys or DEFAULT_KEYS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path[:0] = [str(REPO_ROOT / "spark_jobs"), str(REPO_ROOT / "plugins")]
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow-home")
    started = time.perf_counter()
    with local_s3() as s3:
        os.environ.update(s3.env)  # the manifest writer (S3Hook) in this process
        with ScaleBench(s3, workdir) as bench:
            runs = [bench.run(keys) for keys in sizes]
    print(
        f"\n## Scale ({os.cpu_count()} CPUs: {cpu_description()}; "
        f"{time.perf_counter() - started:.0f} s in all; logs in {workdir})\n"
    )
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
