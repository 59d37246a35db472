"""Bare model throughput: forward passes only, no Spark, no S3, no decoding.

Each worker is a fresh process (``OMP_NUM_THREADS`` must be set before MXNet is imported) that
binds the model with the job's own code (:func:`batch_inference.model.bind_model`, so softmax and
the bound batch shape are the job's; with ``--runtime onnxruntime`` or ``openvino`` the model
converted by :func:`batch_inference.convert.export_onnx`, bound as the job's tasks bind it),
feeds a fixed random batch and counts images per second.
Running ``workers`` of them at once with ``threads`` each reproduces the job's layout on this
machine: ``local[2]`` runs two tasks at a time, each with ``spark.task.cpus`` (1) MXNet threads.

    OMP_NUM_THREADS=1 python -m bench.model_throughput SYMBOL PARAMS --batch-size 64 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("mxnet", "onnxruntime", "openvino")


def measure(
    symbol: Path,
    params: Path,
    batch_size: int,
    image_size: int,
    seconds: float,
    runtime: str = "mxnet",
    onnx: Path | None = None,
) -> dict[str, float]:
    """Images/s of back-to-back ``predict`` calls for ``seconds`` (after two warm-up batches);
    ``onnx``: the ONNX file to run (e.g. an int8 one) instead of converting the MXNet files."""
    import numpy as np
    from batch_inference.config import ModelSpec
    from batch_inference.model import bind_model
    from batch_inference.runtime import BoundModel

    symbol_json = symbol.read_text()
    classes = _num_classes(symbol_json, batch_size, image_size)
    spec = ModelSpec(name="bench", symbol_uri="", params_uri="", labels_uri="", runtime=runtime)
    labels = [str(index) for index in range(classes)]
    model: BoundModel
    if runtime == "mxnet":
        model = bind_model(spec, symbol_json, params.read_bytes(), labels, batch_size, image_size)
    else:
        from batch_inference.convert import export_onnx
        from batch_inference.runtime import bind_converted

        if onnx is not None:
            graph = onnx.read_bytes()
        else:
            graph = export_onnx(symbol_json, params.read_bytes(), "data", image_size)
        model = bind_converted(spec, graph, labels, batch_size, image_size)
    batch = np.random.default_rng(0).random((batch_size, 3, image_size, image_size), np.float32)
    for _ in range(2):
        model.predict(batch)
    images, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        model.predict(batch)
        images += batch_size
    return {"images": images, "seconds": elapsed, "images_per_second": images / elapsed}


def _num_classes(symbol_json: str, batch_size: int, image_size: int) -> int:
    import mxnet as mx

    symbol = mx.sym.load_json(symbol_json)
    _, shapes, _ = symbol.infer_shape(data=(batch_size, 3, image_size, image_size))
    return int(shapes[0][1])


def run_workers(
    symbol: Path,
    params: Path,
    workers: int,
    threads: int,
    batch_size: int,
    image_size: int = 224,
    seconds: float = 20.0,
    runtime: str = "mxnet",
    onnx: Path | None = None,
) -> float:
    """Total images/s of ``workers`` concurrent processes with ``threads`` runtime threads each
    (``onnx``: see :func:`measure`)."""
    command = [
        sys.executable,
        "-m",
        "bench.model_throughput",
        str(symbol),
        str(params),
        f"--batch-size={batch_size}",
        f"--image-size={image_size}",
        f"--seconds={seconds}",
        f"--runtime={runtime}",
        *([f"--onnx={onnx}"] if onnx is not None else []),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "spark_jobs")]),
    }
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        for _ in range(workers)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"model throughput worker failed with code {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sum(result["images_per_second"] for result in results)


def main(argv: list[str] | None = None) -> None:
    """Measure one worker and print its result as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbol", type=Path)
    parser.add_argument("params", type=Path)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runtime", choices=RUNTIMES, default="mxnet")
    parser.add_argument("--onnx", type=Path, help="an ONNX file to run (a converted runtime)")
    args = parser.parse_args(argv)
    result = measure(
        args.symbol,
        args.params,
        args.batch_size,
        args.image_size,
        args.seconds,
        args.runtime,
        args.onnx,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
