"""Benchmark 10: the job's two engines side by side (``--engine rdd`` and
``--engine predict_batch_udf``) on the same photos, model (ResNet-18, 224 px, fp32), S3 latency,
master and batch size, against the bare model measured in the same run.

Both runs write the same staged output contract; the benchmark also checks that their rows are
the same, part by part (but ``run_id``: each run has its own).
Run it alone with ``python -m bench.run_all --only engines``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.latency_proxy import LatencyProxy
from bench.model_throughput import run_workers

#: photos per engine (at most the run's photo set): a few minutes on 2 cores
ENGINE_PHOTOS = 400
ENGINES = ("rdd", "predict_batch_udf")


def rows_of(bench: Any, name: str) -> list[dict]:
    """The rows a job run wrote under ``<output bucket>/<name>/``, part by part, without their
    ``run_id`` (each run has its own)."""
    from bench.layout import OUTPUT_BUCKET

    client = bench.s3.client()
    rows = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=OUTPUT_BUCKET, Prefix=name + "/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            if "/_metrics/" not in item["Key"]:
                body = client.get_object(Bucket=OUTPUT_BUCKET, Key=item["Key"])["Body"].read()
                rows += [json.loads(line) for line in body.decode("utf-8").splitlines()]
    return [{key: value for key, value in row.items() if key != "run_id"} for row in rows]


def probe_online(
    model: dict, image_uri: str, batch_size: int, repeats: int, onnx: list | None = None
) -> dict:
    """In a fresh process (:func:`online_figures`): the online predictor's cold start (model
    download, checks and bind), its warm per-image latency (median) and the process's peak RSS;
    with ``onnx`` (``[uri, sha256]`` of the converted model), in ONNX Runtime."""
    import dataclasses

    from batch_inference.config import ModelSpec, Preprocess
    from batch_inference.online import OnlineSettings, Predictor
    from batch_inference.partition import memory_peaks

    spec = ModelSpec(
        name=model["name"],
        symbol_uri=model["symbol"],
        params_uri=model["params"],
        labels_uri=model["labels"],
        symbol_sha256=model["symbol_sha256"],
        params_sha256=model["params_sha256"],
        labels_sha256=model["labels_sha256"],
    )
    if onnx:
        spec = dataclasses.replace(
            spec, runtime="onnxruntime", onnx_uri=onnx[0], onnx_sha256=onnx[1]
        )
    settings = OnlineSettings(spec, Preprocess(image_size=model["image_size"]), 5, batch_size)
    started = time.perf_counter()
    predictor = Predictor(settings)
    predictor.predict_uri(image_uri)
    cold = time.perf_counter() - started
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_uri(image_uri)
        seconds.append(time.perf_counter() - started)
    return {
        "cold_seconds": cold,
        "warm_seconds": sorted(seconds)[len(seconds) // 2],
        "peak_rss_mb": memory_peaks()[0],
    }


def online_figures(
    bench: Any, image_uri: str, batch_size: int, onnx: tuple[str, str] | None = None
) -> dict:
    """:func:`probe_online` in a fresh interpreter with one runtime thread (one Lambda vCPU)."""
    code = (
        "import json, sys; from bench.engines import probe_online; "
        "print(json.dumps(probe_online(*json.loads(sys.argv[1]))))"
    )
    arguments = json.dumps([bench.resnet_args, image_uri, batch_size, 20, onnx])
    env = {**os.environ, **bench.s3.env, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])
    process = subprocess.run(
        [sys.executable, "-c", code, arguments],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(process.stdout.splitlines()[-1])


def compare_engines(bench: Any) -> list[tuple[str, str]]:
    """Run both engines and the bare model; the table's ``(name, value)`` lines."""
    from bench.layout import BATCH_SIZE, LATENCY_SECONDS, TASK_THREADS, WORKERS

    n = min(bench.sizes.photos, ENGINE_PHOTOS)
    manifest_uri = bench.manifest(bench.photos, "engines", limit=n)
    model = (bench.resnet.symbol_path, bench.resnet.params_path)
    bare = run_workers(*model, WORKERS, TASK_THREADS, BATCH_SIZE, seconds=bench.sizes.model_seconds)
    runs, tasks = {}, {}
    with LatencyProxy(bench.s3.endpoint_url, LATENCY_SECONDS) as proxy:
        for engine in ENGINES:
            name = f"engine-{engine}"
            runs[engine] = bench.run_job(
                name,
                manifest_uri,
                bench.resnet_args,
                proxy.endpoint_url,
                extra=(f"--engine={engine}",),
            )
            tasks[engine] = n / bench.task_seconds(name)
    rdd, udf = (runs[engine].wall_seconds for engine in ENGINES)
    rows = rows_of(bench, "engine-rdd")
    same = len(rows) == n and rows == rows_of(bench, "engine-predict_batch_udf")
    latency = f"+{LATENCY_SECONDS * 1000:.0f} ms/request"
    lines = [
        (
            f"10 bare ResNet-18, job layout: {WORKERS} procs x {TASK_THREADS} thread, "
            f"batch {BATCH_SIZE}",
            f"{bare:.1f} img/s",
        )
    ]
    for engine in ENGINES:
        seconds = runs[engine].wall_seconds
        lines.append(
            (
                f"  --engine {engine}, {n} JPEGs, {latency}: in its tasks / end to end",
                f"{tasks[engine]:.1f} / {n / seconds:.1f} img/s ({seconds:.0f} s)",
            )
        )
    lines += [
        (
            "  ratio predict_batch_udf / rdd: in tasks / end to end",
            f"{tasks['predict_batch_udf'] / tasks['rdd']:.2f} / {rdd / udf:.2f}",
        ),
        (
            "  ratio to bare, in tasks: rdd / predict_batch_udf",
            f"{tasks['rdd'] / bare:.2f} / {tasks['predict_batch_udf'] / bare:.2f}",
        ),
        ("  the two engines' rows the same (run_id aside), part by part", "yes" if same else "NO"),
    ]
    image_uri = rows[0]["key"]  # an s3:// URI of the photo set
    for batch_size in (1, BATCH_SIZE):
        online = online_figures(bench, image_uri, batch_size)
        lines.append(
            (
                f"  online predictor, ResNet-18 bound for batch {batch_size}, 1 thread: cold "
                "start / warm latency / peak RSS",
                f"{online['cold_seconds']:.1f} s / {online['warm_seconds'] * 1000:.0f} ms / "
                f"{online['peak_rss_mb']} MiB",
            )
        )
    return lines
