"""Benchmark 11: the model runtimes side by side (``--runtime mxnet`` and ``--runtime
onnxruntime``, fp32): the bare forward of ResNet-18 (random weights, 224 px) in the job's layout,
the whole job on the same photos, S3 latency and master, and the top-1 agreement of the converted
model with MXNet on the demo digits CNN trained here (1,000 held-out digits; never on random
weights). Every figure is a ratio within this run; the CPU and its int8 flags are printed by the
table's header (:func:`bench.int8.cpu_description`).

Run it alone with ``python -m bench.run_all --only runtimes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.engines import online_figures, rows_of
from bench.latency_proxy import LatencyProxy
from bench.model_throughput import run_workers

RUNTIMES = ("mxnet", "onnxruntime")
#: the distribution of each runtime, whose installed size an image carries
DISTRIBUTIONS = {"mxnet": "mxnet", "onnxruntime": "onnxruntime"}


def installed_mb(distribution: str) -> float:
    """MiB of the files ``distribution`` installed (what a Lambda image carries for it)."""
    import importlib.metadata

    files = importlib.metadata.distribution(distribution).files or []
    return sum(path.locate().stat().st_size for path in files if path.locate().is_file()) / 2**20


def converted(bench: Any) -> tuple[str, str]:
    """``(uri, sha256)`` of the model the onnxruntime job run converted (its cache record)."""
    import json

    from bench.run_all import OUTPUT_BUCKET

    client = bench.s3.client()
    listing = client.list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="converted/")
    (record,) = [item["Key"] for item in listing["Contents"] if item["Key"].endswith(".json")]
    body = json.loads(client.get_object(Bucket=OUTPUT_BUCKET, Key=record)["Body"].read())
    return f"s3://{OUTPUT_BUCKET}/{record.rsplit('/', 1)[0]}/model.onnx", body["onnx_sha256"]


def digits_runtime_agreement(workdir: Path, held_out: int = 1000) -> dict[str, float]:
    """Accuracy of the trained digits CNN under each runtime on held-out digits, and the share of
    them whose top-1 class is the same in both (the job's conversion, the job's sessions)."""
    from batch_inference.config import ModelSpec
    from batch_inference.convert import export_onnx
    from batch_inference.model import bind_model
    from batch_inference.runtime import bind_onnx

    from tools.demo.images import TRAIN_COUNT
    from tools.demo.models import digits_tensors, train_digits_classifier

    model = train_digits_classifier(workdir / "digits-runtimes")
    preprocess = model.preprocess()
    tensors, labels = digits_tensors(range(TRAIN_COUNT, TRAIN_COUNT + held_out // 2), preprocess)
    names, size = model.labels(), preprocess.image_size
    symbol, params = model.symbol_path.read_text(), model.params_path.read_bytes()
    mxnet = bind_model(ModelSpec("d", "", "", ""), symbol, params, names, 50, size)
    onnx = bind_onnx(
        ModelSpec("d", "", "", "", runtime="onnxruntime"),
        export_onnx(symbol, params, "data", size),
        names,
        50,
        size,
    )

    def top1(bound) -> np.ndarray:
        return np.concatenate(
            [bound.predict(tensors[i : i + 50]).argmax(1) for i in range(0, len(tensors), 50)]
        )

    ours, theirs = top1(onnx), top1(mxnet)
    return {
        "images": len(tensors),
        "agreement": float((ours == theirs).mean()),
        "mxnet_accuracy": float((theirs == labels).mean()),
        "onnxruntime_accuracy": float((ours == labels).mean()),
    }


def compare_runtimes(bench: Any) -> list[tuple[str, str]]:
    """(row name, value) of benchmark 11 (``bench`` is :class:`bench.run_all.Bench`)."""
    from bench.run_all import BATCH_SIZE, LATENCY_SECONDS, OUTPUT_BUCKET, TASK_THREADS, WORKERS

    resnet, seconds = bench.resnet, bench.sizes.model_seconds
    files = (resnet.symbol_path, resnet.params_path)
    bare = {
        runtime: run_workers(
            *files, WORKERS, TASK_THREADS, BATCH_SIZE, seconds=seconds, runtime=runtime
        )
        for runtime in RUNTIMES
    }
    n = bench.sizes.photos
    bench.photos_manifest = bench.photos_manifest or bench.manifest(bench.photos, "photos")
    tasks = {}
    with LatencyProxy(bench.s3.endpoint_url, LATENCY_SECONDS) as proxy:
        for runtime in RUNTIMES:
            extra = (f"--runtime={runtime}", f"--conversion-cache=s3://{OUTPUT_BUCKET}/converted/")
            bench.run_job(
                f"runtime-{runtime}",
                bench.photos_manifest,
                bench.resnet_args,
                proxy.endpoint_url,
                extra=extra,
            )
            tasks[runtime] = n / bench.task_seconds(f"runtime-{runtime}")
    digits = digits_runtime_agreement(bench.workdir)
    image_uri = rows_of(bench, "runtime-mxnet")[0]["key"]
    online = {
        "mxnet": online_figures(bench, image_uri, 1),
        "onnxruntime": online_figures(bench, image_uri, 1, converted(bench)),
    }
    size = {runtime: installed_mb(DISTRIBUTIONS[runtime]) for runtime in RUNTIMES}
    lines = []
    for runtime in RUNTIMES:
        cold, warm = online[runtime]["cold_seconds"], online[runtime]["warm_seconds"] * 1000
        lines.append(
            (f"  online predictor ({runtime}), ResNet-18, batch 1, 1 thread: cold start / warm "
             "latency / peak RSS / the runtime's installed size",
             f"{cold:.1f} s / {warm:.0f} ms / {online[runtime]['peak_rss_mb']} MiB / "
             f"{size[runtime]:.0f} MiB")
        )  # fmt: skip
    return [
        ("11 bare forward onnxruntime / mxnet, fp32, job layout (ResNet-18)",
         f"{bare['onnxruntime'] / bare['mxnet']:.2f}x ({bare['onnxruntime']:.1f} vs "
         f"{bare['mxnet']:.1f} img/s)"),
        (f"  our job, onnxruntime / mxnet, {n} JPEGs, +{LATENCY_SECONDS * 1000:.0f} ms/request",
         f"{tasks['onnxruntime'] / tasks['mxnet']:.2f}x ({tasks['onnxruntime']:.1f} vs "
         f"{tasks['mxnet']:.1f} img/s in the tasks)"),
        (f"  digits CNN trained here, {digits['images']} held-out digits: top-1 agreement "
         "onnxruntime / mxnet", f"{digits['agreement']:.1%} (accuracy mxnet "
         f"{digits['mxnet_accuracy']:.1%}, onnxruntime {digits['onnxruntime_accuracy']:.1%})"),
        *lines,
    ]  # fmt: skip
