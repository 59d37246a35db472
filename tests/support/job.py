"""Helpers for the Spark job's tests: manifests, the job zip, spark-submit and reading output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from batch_inference.config import JobConfig
from batch_inference.contract.formats import METRICS_DIR
from batch_inference.manifest import read_manifest
from batch_inference.package import ENTRY_POINT, build_job_zip
from batch_inference.s3io import make_client, parse_s3_uri

if TYPE_CHECKING:
    from emr_inference_tools.node_twin import NodeTwin

#: the run fingerprint in-process partition runs use unless told otherwise
FINGERPRINT = "a" * 64


def write_manifest(client, bucket: str, prefix: str, uris: list[str], shard_size: int) -> str:
    """Write a contract manifest (docs/CONTRACTS.md) for ``uris``; returns its URI."""
    prefix = prefix.strip("/")
    shards = []
    for number, start in enumerate(range(0, len(uris), shard_size)):
        chunk = uris[start : start + shard_size]
        key = f"{prefix}/shard-{number:05d}.txt"
        client.put_object(Bucket=bucket, Key=key, Body="".join(f"{u}\n" for u in chunk).encode())
        shards.append({"uri": f"s3://{bucket}/{key}", "count": len(chunk)})
    doc = {"version": 1, "total": len(uris), "source": f"s3://{bucket}/", "shards": shards}
    client.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(doc).encode())
    return f"s3://{bucket}/{prefix}/manifest.json"


def spark_submit_path() -> Path:
    """``spark-submit`` of the pyspark installed beside this interpreter."""
    beside = Path(sys.executable).parent / "spark-submit"
    if beside.exists():
        return beside
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-submit"


def run_job(
    zip_path: Path,
    args: list[str],
    s3_env: dict[str, str],
    timeout: float = 300,
    master: str = "local[2]",
    twin: NodeTwin | None = None,
) -> subprocess.CompletedProcess:
    """Run the job through a real ``spark-submit --master <master>``; returns the process.

    ``s3_env`` (endpoint, credentials, any extra variables) is added to this process's
    environment. ``local[N]`` never retries a failed task; ``local[N,F]`` allows ``F`` attempts.
    spark-submit prints the Python driver's stdout and stderr on its stdout, Spark's own logs and
    the executors' Python stderr on its stderr. With ``twin`` (an EMR node twin), the driver and
    workers run on the node's interpreter and packages, under its release's Spark.
    """
    env = {
        **os.environ,
        **s3_env,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        **(twin.spark_env() if twin else {}),
    }
    command = [
        str(twin.spark_submit if twin else spark_submit_path()),
        "--master", master,
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
        "--py-files", str(zip_path),
        str(ENTRY_POINT),
        *args,
    ]  # fmt: skip
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def job_zip(directory: Path) -> Path:
    """Build the job zip the way the DAG stages it."""
    return build_job_zip(directory / "batch_inference.zip")


def read_output(client, output_uri: str) -> tuple[list[dict], list[dict], list[str]]:
    """Every row (plain ``json.loads`` per line), every metrics part, and every key written."""
    target = parse_s3_uri(output_uri)
    prefix = target.key if target.key.endswith("/") else target.key + "/"
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=target.bucket, Prefix=prefix
        )
        for item in page.get("Contents", [])
    ]
    rows, metrics = [], []
    for key in sorted(keys):
        body = client.get_object(Bucket=target.bucket, Key=key)["Body"].read().decode("utf-8")
        if key.startswith(prefix + METRICS_DIR + "/"):
            metrics.append(json.loads(body))
        else:
            rows.extend(json.loads(line) for line in body.splitlines())
    return rows, metrics, [key[len(prefix) :] for key in keys]


def run_partition(
    config: JobConfig, index: int, partitions: int, fingerprint: str = FINGERPRINT
) -> dict:
    """Run one partition in this process (no Spark), as a task would; returns its metrics."""
    from batch_inference.partition import process_partition

    manifest = read_manifest(make_client(), config.manifest_uri)
    return process_partition(index, partitions, config, manifest, fingerprint, omp_threads=1)
