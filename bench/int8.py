"""int8 against fp32: the CPU's relevant flags, the int8 model files, and accuracy both ways.

The int8 model is made with the job's own code (:func:`batch_inference.quantize.quantize`: MXNet's
oneDNN quantization, naive calibration, dense layers kept fp32). Speed is measured on ResNet-18
with random weights; accuracy and top-1 agreement only on a model trained here (the demo's digits
CNN, held-out digits), never on random weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: CPU flags that decide int8 speed: VNNI (int8 dot products) above all.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_description(cpuinfo: str | None = None) -> str:
    """``<model name>; flags: avx2 avx512f ...`` (only the flags in :data:`FLAGS` it has)."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    first = cpuinfo.split("\n\n", 1)[0]  # the first processor's block
    fields = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in first.splitlines())
    }
    model = fields.get("model name", "unknown")
    have = set(fields.get("flags", "").split())
    present = [flag for flag in FLAGS if flag in have]
    return f"{model}; flags: {' '.join(present) or 'none of ' + ', '.join(FLAGS)}"


def quantized_files(
    symbol: Path, params: Path, calibration: np.ndarray, out_dir: Path
) -> tuple[Path, Path]:
    """Quantize an exported model with the job's code; returns the int8 (symbol, params) paths."""
    from batch_inference.quantize import quantize

    qsymbol, qparams = quantize(symbol.read_text(), params.read_bytes(), calibration, "data")
    out_dir.mkdir(parents=True, exist_ok=True)
    symbol_path, params_path = out_dir / "int8-symbol.json", out_dir / "int8-0000.params"
    symbol_path.write_text(qsymbol)
    params_path.write_bytes(qparams)
    return symbol_path, params_path


def decoded_photos(count: int, preprocess) -> np.ndarray:
    """The first ``count`` benchmark photos, decoded by the job's code (calibration input)."""
    from batch_inference.images import decode_image

    from bench.dataset import photo_jpeg

    return np.stack([decode_image(photo_jpeg(index), preprocess) for index in range(count)])


def digits_agreement(workdir: Path, held_out: int = 1000) -> dict[str, float]:
    """Accuracy of the trained digits CNN in fp32 and int8 on held-out digits, and the share of
    them whose top-1 class is the same both ways."""
    from batch_inference.config import ModelSpec
    from batch_inference.model import bind_model

    from emr_inference_tools.demo.images import TRAIN_COUNT
    from emr_inference_tools.demo.models import digits_tensors, train_digits_classifier

    model = train_digits_classifier(workdir / "digits-trained")
    preprocess = model.preprocess()
    calibration, _ = digits_tensors(range(128), preprocess)  # training digits, PNG and JPEG
    symbol, params = quantized_files(
        model.symbol_path, model.params_path, calibration, workdir / "digits-int8"
    )
    tensors, labels = digits_tensors(range(TRAIN_COUNT, TRAIN_COUNT + held_out // 2), preprocess)
    spec = ModelSpec(name="digits", symbol_uri="", params_uri="", labels_uri="")
    names = model.labels()
    size = preprocess.image_size

    def predict(symbol_path: Path, params_path: Path) -> np.ndarray:
        bound = bind_model(spec, symbol_path.read_text(), params_path.read_bytes(), names, 50, size)
        return np.concatenate(
            [bound.predict(tensors[i : i + 50]).argmax(1) for i in range(0, len(tensors), 50)]
        )

    fp32 = predict(model.symbol_path, model.params_path)
    int8 = predict(symbol, params)
    return {
        "images": len(tensors),
        "fp32_accuracy": float((fp32 == labels).mean()),
        "int8_accuracy": float((int8 == labels).mean()),
        "agreement": float((fp32 == int8).mean()),
    }
