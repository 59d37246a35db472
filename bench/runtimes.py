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

from bench.latency_proxy import LatencyProxy
from bench.model_throughput import run_workers

RUNTIMES = ("mxnet", "onnxruntime")


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
    ]  # fmt: skip
