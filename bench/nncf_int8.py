"""Benchmark 11b: OpenVINO's own int8 quantizer (NNCF) against the file the job quantizes with ONNX
Runtime's (QDQ), both run by OpenVINO: speed on ResNet-18 (random weights, 224 px, batch 64, one
inference thread, as a Spark worker runs it) and top-1 agreement with fp32 on the demo digits CNN
trained here (1,000 held-out digits; never judged on random weights).

NNCF needs numpy >= 1.24, which cannot sit beside MXNet's numpy < 1.24 in this repository's venv,
so the benchmark runs in two venvs:

1. ``.venv/bin/python -m bench.nncf_int8 prepare DIR`` (this venv: MXNet exports both models to
   ONNX and the job's own quantizer, :func:`batch_inference.quantize_onnx.quantize`, makes the QDQ
   files; the tensors are saved as ``.npy``);
2. ``VENV/bin/python -m bench.nncf_int8 measure DIR`` in a venv of ``openvino==2026.4.1
   nncf==3.4.0`` (the nodes' OpenVINO): compiles fp32, the QDQ file and ``nncf.quantize``'s model,
   and prints the table. Every figure is a ratio within that run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import time
from pathlib import Path

import numpy as np

#: what the job's runtime compiles with (batch_inference.runtime.bind_openvino, one thread)
COMPILE = {
    "INFERENCE_NUM_THREADS": 1,
    "NUM_STREAMS": 1,
    "INFERENCE_PRECISION_HINT": "f32",
    "ENABLE_CPU_PINNING": False,
    "PERFORMANCE_HINT": "LATENCY",
}
BATCH, CALIBRATION, PHOTOS = 64, 64, 256


def prepare(folder: Path) -> None:
    """The ONNX files and tensors ``measure`` reads (run in this repository's venv)."""
    from batch_inference.config import Preprocess
    from batch_inference.convert import export_onnx
    from batch_inference.quantize_onnx import quantize

    from bench.int8 import decoded_photos
    from emr_inference_tools.demo.images import TRAIN_COUNT
    from emr_inference_tools.demo.models import (
        digits_tensors,
        export_resnet18,
        train_digits_classifier,
    )

    folder.mkdir(parents=True, exist_ok=True)
    photos = decoded_photos(PHOTOS, Preprocess(image_size=224))
    resnet = export_resnet18(folder / "resnet18", image_size=224, name="resnet18_v1")
    fp32 = export_onnx(resnet.symbol_path.read_text(), resnet.params_path.read_bytes(), "data", 224)
    (folder / "resnet18.onnx").write_bytes(fp32)
    (folder / "resnet18-qdq.onnx").write_bytes(quantize(fp32, photos[:CALIBRATION], "data"))
    np.save(folder / "photos.npy", photos)

    digits = train_digits_classifier(folder / "digits")
    preprocess = digits.preprocess()
    held_out, labels = digits_tensors(range(TRAIN_COUNT, TRAIN_COUNT + 500), preprocess)
    calibration, _ = digits_tensors(range(128), preprocess)
    size = preprocess.image_size
    fp32 = export_onnx(
        digits.symbol_path.read_text(), digits.params_path.read_bytes(), "data", size
    )
    (folder / "digits.onnx").write_bytes(fp32)
    (folder / "digits-qdq.onnx").write_bytes(quantize(fp32, calibration, "data"))
    np.save(folder / "digits-held-out.npy", held_out)
    np.save(folder / "digits-labels.npy", np.asarray(labels))
    np.save(folder / "digits-calibration.npy", calibration)
    print(f"prepared {folder}")


def installed_mb(distribution: str, seen: set[str] | None = None) -> float:
    """MiB that ``distribution`` and every dependency it pulls in (not yet in ``seen``) install."""
    seen = set() if seen is None else seen
    name = re.split(r"[ ;<>=!\[~(]", distribution, maxsplit=1)[0].lower().replace("_", "-")
    if name in seen:
        return 0.0
    seen.add(name)
    try:
        found = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return 0.0
    paths = [Path(str(file.locate())) for file in found.files or []]
    size = sum(path.stat().st_size for path in paths if path.is_file())
    needs = [req for req in found.requires or [] if "extra ==" not in req]
    return size / 2**20 + sum(installed_mb(req, seen) for req in needs)


def measure(folder: Path, seconds: float) -> None:
    """The table (run in a venv with openvino and nncf)."""
    import nncf
    import openvino as ov

    from bench.int8 import cpu_description

    core = ov.Core()

    def compiled(model):
        return core.compile_model(model, "CPU", COMPILE)

    def images_per_second(model, batch: np.ndarray) -> float:
        request = compiled(model).create_infer_request()
        request.infer({0: batch})
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            request.infer({0: batch})
            count += len(batch)
        return count / (time.perf_counter() - started)

    def top1(model, tensors: np.ndarray) -> np.ndarray:
        model = compiled(model)
        return np.concatenate(
            [
                model(tensors[i : i + 50])[model.output(0)].argmax(1)
                for i in range(0, len(tensors), 50)
            ]
        )

    def nncf_int8(model, calibration: np.ndarray):
        started = time.perf_counter()
        dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
        return quantized, time.perf_counter() - started

    photos = np.load(folder / "photos.npy")
    resnet = core.read_model(folder / "resnet18.onnx")
    resnet_nncf, resnet_seconds = nncf_int8(resnet, photos[:CALIBRATION])
    batch = photos[CALIBRATION : CALIBRATION + BATCH]
    rates = {
        "fp32": images_per_second(resnet, batch),
        "int8, the job's QDQ file (ONNX Runtime's quantizer)": images_per_second(
            core.read_model(folder / "resnet18-qdq.onnx"), batch
        ),
        "int8, NNCF": images_per_second(resnet_nncf, batch),
    }

    held_out = np.load(folder / "digits-held-out.npy")
    labels = np.load(folder / "digits-labels.npy")
    digits = core.read_model(folder / "digits.onnx")
    digits_nncf, _ = nncf_int8(digits, np.load(folder / "digits-calibration.npy"))
    reference = top1(digits, held_out)
    answers = {
        "fp32": reference,
        "int8, the job's QDQ file (ONNX Runtime's quantizer)": top1(
            core.read_model(folder / "digits-qdq.onnx"), held_out
        ),
        "int8, NNCF": top1(digits_nncf, held_out),
    }

    print(f"CPU: {cpu_description()}; openvino {ov.__version__}, nncf {nncf.__version__}")
    print(f"| OpenVINO, ResNet-18, batch {BATCH}, 1 thread | img/s | vs fp32 | digits top-1 "
          f"agreement with fp32 ({len(held_out)} held out) | accuracy |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, rate in rates.items():
        agreement = float((answers[name] == reference).mean())
        accuracy = float((answers[name] == labels).mean())
        print(
            f"| {name} | {rate:.1f} | {rate / rates['fp32']:.2f}x | {agreement:.1%} | "
            f"{accuracy:.1%} |"
        )
    print(f"NNCF int8 / QDQ int8: {rates['int8, NNCF'] / rates[list(rates)[1]]:.2f}x; "
          f"nncf.quantize of ResNet-18 on {CALIBRATION} images: {resnet_seconds:.1f} s; "
          f"nncf and what it pulls in beside openvino and numpy: "
          f"{installed_mb('nncf', {'openvino', 'numpy'}):.0f} MiB installed")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("prepare", "measure"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0, help="per speed figure")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(repo / "spark_jobs"), str(repo / "plugins")]
    if args.step == "prepare":
        prepare(args.folder)
    else:
        measure(args.folder, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
