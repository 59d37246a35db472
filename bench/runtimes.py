"""Benchmark 11: the model runtimes side by side (``--runtime mxnet`` and ``--runtime
onnxruntime``, fp32 and int8): the bare forward of ResNet-18 (random weights, 224 px; int8
calibrated on 64 of the photos) in the job's layout, the whole job on the same photos, S3 latency
and master, and the top-1 agreement of each with MXNet fp32 on the demo digits CNN trained here
(1,000 held-out digits; never on random weights). Every figure is a ratio within this run; the
CPU and its int8 flags are printed by the table's header (:func:`bench.int8.cpu_description`).

Run it alone with ``python -m bench.run_all --only runtimes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.engines import online_figures, rows_of
from bench.latency_proxy import LatencyProxy
from bench.model_throughput import run_workers

RUNTIMES = ("mxnet", "onnxruntime", "openvino")
#: the runtimes with an online predictor image (docker/lambda*/)
ONLINE = ("mxnet", "onnxruntime")
#: the distribution of each runtime, whose installed size an image carries
DISTRIBUTIONS = {"mxnet": "mxnet", "onnxruntime": "onnxruntime", "openvino": "openvino"}
PRECISIONS = ("fp32", "int8")


def installed_mb(distribution: str) -> float:
    """MiB of the files ``distribution`` installed (what a Lambda image carries for it)."""
    import importlib.metadata

    files = importlib.metadata.distribution(distribution).files or []
    located = [Path(path.locate()) for path in files]
    return sum(path.stat().st_size for path in located if path.is_file()) / 2**20


def converted(bench: Any) -> tuple[str, str]:
    """``(uri, sha256)`` of the model the onnxruntime job run converted (its cache record)."""
    import json

    from bench.layout import OUTPUT_BUCKET

    client = bench.s3.client()
    listing = client.list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="converted/")
    (record,) = [item["Key"] for item in listing["Contents"] if item["Key"].endswith(".json")]
    body = json.loads(client.get_object(Bucket=OUTPUT_BUCKET, Key=record)["Body"].read())
    return f"s3://{OUTPUT_BUCKET}/{record.rsplit('/', 1)[0]}/model.onnx", body["onnx_sha256"]


def onnx_int8_file(symbol: Path, params: Path, calibration: np.ndarray, out: Path) -> Path:
    """The MXNet model converted and quantized with the job's code (``batch_inference.convert``,
    ``batch_inference.quantize_onnx``), written to ``out``."""
    from batch_inference.convert import export_onnx
    from batch_inference.quantize_onnx import quantize

    fp32 = export_onnx(symbol.read_text(), params.read_bytes(), "data", calibration.shape[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(quantize(fp32, calibration, "data"))
    return out


def digits_runtime_agreement(workdir: Path, held_out: int = 1000) -> dict[str, float]:
    """Accuracy of the trained digits CNN in each runtime and precision on held-out digits, and
    the share of them whose top-1 class is MXNet fp32's (the job's conversion and quantizers, int8
    calibrated on 128 training digits as benchmark 7 does)."""
    from batch_inference.config import ModelSpec
    from batch_inference.convert import export_onnx
    from batch_inference.model import bind_model
    from batch_inference.runtime import bind_converted

    from bench.int8 import quantized_files
    from emr_inference_tools.demo.images import TRAIN_COUNT
    from emr_inference_tools.demo.models import digits_tensors, train_digits_classifier

    model = train_digits_classifier(workdir / "digits-runtimes")
    preprocess = model.preprocess()
    tensors, labels = digits_tensors(range(TRAIN_COUNT, TRAIN_COUNT + held_out // 2), preprocess)
    calibration, _ = digits_tensors(range(128), preprocess)
    names, size = model.labels(), preprocess.image_size
    symbol_path, params_path = model.symbol_path, model.params_path
    mxnet_spec = ModelSpec("d", "", "", "")
    fp32_onnx = export_onnx(symbol_path.read_text(), params_path.read_bytes(), "data", size)
    int8_symbol, int8_params = quantized_files(
        symbol_path, params_path, calibration, workdir / "digits-runtimes-int8"
    )
    int8_onnx = onnx_int8_file(
        symbol_path, params_path, calibration, workdir / "digits-runtimes-int8" / "int8.onnx"
    )
    bound = {
        "mxnet fp32": bind_model(
            mxnet_spec, symbol_path.read_text(), params_path.read_bytes(), names, 50, size
        ),
        "mxnet int8": bind_model(
            mxnet_spec, int8_symbol.read_text(), int8_params.read_bytes(), names, 50, size
        ),
        **{
            f"{runtime} {precision}": bind_converted(
                ModelSpec("d", "", "", "", runtime=runtime),
                fp32_onnx if precision == "fp32" else int8_onnx.read_bytes(),
                names,
                50,
                size,
            )
            for runtime in RUNTIMES[1:]
            for precision in PRECISIONS
        },
    }
    top1 = {
        name: np.concatenate(
            [model.predict(tensors[i : i + 50]).argmax(1) for i in range(0, len(tensors), 50)]
        )
        for name, model in bound.items()
    }
    reference = top1["mxnet fp32"]
    return {
        "images": len(tensors),
        **{f"{name} agreement": float((top == reference).mean()) for name, top in top1.items()},
        **{f"{name} accuracy": float((top == labels).mean()) for name, top in top1.items()},
    }


def compare_runtimes(bench: Any) -> list[tuple[str, str]]:
    """(row name, value) of benchmark 11 (``bench`` is :class:`bench.run_all.Bench`)."""
    from bench.int8 import decoded_photos, quantized_files
    from bench.layout import BATCH_SIZE, LATENCY_SECONDS, OUTPUT_BUCKET, TASK_THREADS, WORKERS

    resnet, seconds = bench.resnet, bench.sizes.model_seconds
    files = (resnet.symbol_path, resnet.params_path)
    calibration = decoded_photos(64, resnet.preprocess())
    int8_files = quantized_files(*files, calibration, bench.workdir / "runtimes-mxnet-int8")
    int8_onnx = onnx_int8_file(*files, calibration, bench.workdir / "runtimes-int8.onnx")
    layout = (WORKERS, TASK_THREADS, BATCH_SIZE)
    bare = {
        ("mxnet", "fp32"): run_workers(*files, *layout, seconds=seconds),
        ("mxnet", "int8"): run_workers(*int8_files, *layout, seconds=seconds),
        **{
            (runtime, precision): run_workers(
                *files, *layout, seconds=seconds, runtime=runtime,
                onnx=int8_onnx if precision == "int8" else None,
            )
            for runtime in RUNTIMES[1:]
            for precision in PRECISIONS
        },
    }  # fmt: skip
    n = bench.sizes.photos
    bench.photos_manifest = bench.photos_manifest or bench.manifest(bench.photos, "photos")
    tasks = {}
    int8_args = (
        "--precision=int8",
        f"--int8-cache=s3://{OUTPUT_BUCKET}/runtimes-int8/",
        "--int8-min-agreement=0",  # random weights: agreement is measured on the digits below
    )
    with LatencyProxy(bench.s3.endpoint_url, LATENCY_SECONDS) as proxy:
        for runtime, precision in bare:
            name = f"runtime-{runtime}-{precision}"
            extra: tuple[str, ...] = (
                f"--runtime={runtime}",
                f"--conversion-cache=s3://{OUTPUT_BUCKET}/converted/",
            )
            extra += int8_args if precision == "int8" else ()
            bench.run_job(name, bench.photos_manifest, bench.resnet_args, proxy.endpoint_url,
                          extra=extra)  # fmt: skip
            tasks[runtime, precision] = n / bench.task_seconds(name)
    digits = digits_runtime_agreement(bench.workdir)
    image_uri = rows_of(bench, "runtime-mxnet-fp32")[0]["key"]
    online = {
        "mxnet": online_figures(bench, image_uri, 1),
        "onnxruntime": online_figures(bench, image_uri, 1, converted(bench)),
    }
    size = {runtime: installed_mb(DISTRIBUTIONS[runtime]) for runtime in RUNTIMES}
    lines = []
    for runtime in ONLINE:
        cold, warm = online[runtime]["cold_seconds"], online[runtime]["warm_seconds"] * 1000
        lines.append(
            (f"  online predictor ({runtime}), ResNet-18, batch 1, 1 thread: cold start / warm "
             "latency / peak RSS / the runtime's installed size",
             f"{cold:.1f} s / {warm:.0f} ms / {online[runtime]['peak_rss_mb']} MiB / "
             f"{size[runtime]:.0f} MiB")
        )  # fmt: skip

    def ratio(figures: dict, a: tuple[str, str], b: tuple[str, str]) -> str:
        return f"{figures[a] / figures[b]:.2f}x ({figures[a]:.1f} vs {figures[b]:.1f} img/s)"

    mx = "mxnet"
    job = f"{n} JPEGs, +{LATENCY_SECONDS * 1000:.0f} ms/request"
    digit_rows = [
        (f"  digits CNN trained here, {digits['images']} held-out digits: top-1 agreement with "
         f"mxnet fp32, {name}", f"{digits[f'{name} agreement']:.1%} (accuracy "
         f"{digits[f'{name} accuracy']:.1%}; mxnet fp32 {digits['mxnet fp32 accuracy']:.1%})")
        for name in (*(f"{r} {p}" for r in RUNTIMES[1:] for p in PRECISIONS), "mxnet int8")
    ]  # fmt: skip
    rows = [
        ("11 bare forward, job layout (ResNet-18): mxnet fp32", f"{bare[mx, 'fp32']:.1f} img/s")
    ]
    for runtime in RUNTIMES[1:]:
        rows += [
            *((f"  bare forward {runtime} / mxnet, {precision}",
               ratio(bare, (runtime, precision), (mx, precision))) for precision in PRECISIONS),
            (f"  bare forward {runtime} int8 / {runtime} fp32",
             ratio(bare, (runtime, "int8"), (runtime, "fp32"))),
        ]  # fmt: skip
    for runtime in RUNTIMES[1:]:
        rows += [
            (f"  our job, {runtime} / mxnet, fp32, {job}",
             ratio(tasks, (runtime, "fp32"), (mx, "fp32")) + " in the tasks"),
            (f"  our job, {runtime} / mxnet, int8", ratio(tasks, (runtime, "int8"), (mx, "int8"))),
            (f"  our job, {runtime} int8 / mxnet fp32",
             ratio(tasks, (runtime, "int8"), (mx, "fp32"))),
        ]  # fmt: skip
    installed = ", ".join(f"{runtime} {size[runtime]:.0f} MiB" for runtime in RUNTIMES)
    return [*rows, *digit_rows, *lines, ("  installed size of each runtime", installed)]
