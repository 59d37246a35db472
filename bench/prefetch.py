"""The prefetch pool on one core: how many threads keep the model's core busy.

The job's own loop (:class:`batch_inference.partition.Prefetch` and
:func:`batch_inference.partition.classify_batch`, rows encoded as the job does) runs in-process on
one pinned CPU over the benchmark photos, once per ``--threads`` value, each in a fresh process
(``OMP_NUM_THREADS=1``); the S3 emulator and the latency proxy (+20 ms per request) are pinned to
another CPU, as on EMR where S3 costs the nodes no CPU. Per image it prints the wall time, the
process's CPU time (the difference is the core idling: every thread waiting for a GET) and the
model's own seconds inside the loop, beside the bare forward on the same core. No Spark: this
isolates the pool from the task around it (docs/BENCHMARKS.md, "int8 (benchmark 7)").

    python -m bench.prefetch --threads 8 --threads 16 --precision int8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cpu_pinning import available_cpus, pinned
from bench.int8 import cpu_description, decoded_photos, quantized_files
from bench.latency_proxy import LatencyProxy
from bench.preloaded_s3 import Dataset, start_preloaded_s3

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE, DEPTH, LATENCY_SECONDS = 64, 2, 0.020


def measure(spec: dict) -> dict[str, float]:
    """In a fresh process pinned to one CPU: the bare forward, then the job's loop (twice: the
    second pass is reported) with ``spec["threads"]`` prefetch threads; ms per image."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import numpy as np
    from batch_inference.config import ModelSpec, Preprocess
    from batch_inference.model import bind_model
    from batch_inference.output import encode_rows
    from batch_inference.partition import Prefetch, classify_batch
    from batch_inference.s3io import make_client

    symbol, params = Path(spec["symbol"]), Path(spec["params"])
    labels = [str(index) for index in range(1000)]
    model_spec = ModelSpec(name="bench", symbol_uri="", params_uri="", labels_uri="")
    model = bind_model(model_spec, symbol.read_text(), params.read_bytes(), labels, BATCH_SIZE, 224)
    batch = np.random.default_rng(0).random((BATCH_SIZE, 3, 224, 224), np.float32)
    for _ in range(2):
        model.predict(batch)
    started, images = time.perf_counter(), 0
    while time.perf_counter() - started < spec["bare_seconds"]:
        model.predict(batch)
        images += BATCH_SIZE
    bare_ms = (time.perf_counter() - started) * 1000 / images

    # a stand-in for the JobConfig fields that Prefetch and classify_batch read
    config: Any = SimpleNamespace(
        batch_size=BATCH_SIZE, prefetch_depth=DEPTH, preprocess=Preprocess(image_size=224),
        model=model_spec, run_id="bench", precision=spec["precision"], top_k=5,
    )  # fmt: skip
    client = make_client(spec["threads"] + 2)
    keys = spec["keys"]
    for _ in range(2):  # the first pass warms the client's connections and the arrays' pages
        with ThreadPoolExecutor(spec["threads"]) as pool:
            wall, cpu, forward = time.perf_counter(), time.process_time(), 0.0
            for inputs, prepared in Prefetch(pool, client, iter(keys), config):
                rows, seconds = classify_batch(prepared, model, config, inputs)
                forward += seconds
                encode_rows(rows)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_image = 1000 / len(keys)
    return {"bare": bare_ms, "wall": wall * per_image, "cpu": cpu * per_image,
            "forward": forward * per_image}  # fmt: skip


def run_variant(spec: dict, cpu: int, env: dict[str, str]) -> dict[str, float]:
    """:func:`measure` in a fresh process on ``cpu``."""
    command = [sys.executable, "-m", "bench.prefetch", "--worker", json.dumps(spec)]
    with pinned({cpu}):
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Start the pinned S3 side, run each thread count, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, action="append", help="repeatable; default 8, 16")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="int8")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--bare-seconds", type=float, default=5.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    cpus = sorted(available_cpus())
    if len(cpus) < 2:
        parser.error("needs two CPUs: one for the loop, one for the S3 emulator and the proxy")
    from emr_inference_tools.demo.models import export_resnet18

    workdir = Path(tempfile.mkdtemp(prefix="bench-prefetch-"))
    resnet = export_resnet18(workdir / "resnet18")
    files = (resnet.symbol_path, resnet.params_path)
    if args.precision == "int8":
        calibration = decoded_photos(64, resnet.preprocess())
        files = quantized_files(*files, calibration, workdir / "int8")
    photos = Dataset("photo", "photos", "images/", args.images)
    with pinned({cpus[-1]}):  # the server process and the proxy's threads inherit it
        s3 = start_preloaded_s3([photos])
        proxy = LatencyProxy(s3.endpoint_url, LATENCY_SECONDS).start()
    env = {
        **os.environ, **s3.env, "AWS_ENDPOINT_URL_S3": proxy.endpoint_url, "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "spark_jobs")]),
    }  # fmt: skip
    keys = [f"s3://{photos.bucket}/{photos.key(index)}" for index in range(args.images)]
    print(f"## Prefetch threads on one core ({args.precision}, {args.images} photos, "
          f"+{LATENCY_SECONDS * 1000:.0f} ms/request; {cpu_description()})\n")  # fmt: skip
    print("| threads | bare forward | loop wall | loop CPU | core idle | forward in the loop |")
    print("|---|---|---|---|---|---|")
    try:
        for threads in args.threads or [8, 16]:
            spec = {
                "symbol": str(files[0]), "params": str(files[1]), "threads": threads,
                "precision": args.precision, "keys": keys, "bare_seconds": args.bare_seconds,
            }  # fmt: skip
            r = run_variant(spec, cpus[0], env)
            idle = 1 - r["cpu"] / r["wall"]
            print(f"| {threads} | {r['bare']:.2f} ms | {r['wall']:.2f} ms | {r['cpu']:.2f} ms | "
                  f"{idle:.0%} | {r['forward']:.2f} ms |", flush=True)  # fmt: skip
    finally:
        proxy.stop()
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
