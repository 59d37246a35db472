"""int8 on ONNX Runtime: the converted model (:mod:`batch_inference.convert`) quantized once by
ONNX Runtime's static quantizer, cached and gated like MXNet's int8 (:mod:`batch_inference.quantize`
says how).

The quantizer: ``onnxruntime.quantization.quant_pre_process`` (shape inference, graph
optimisation), then ``quantize_static`` in the QDQ format, weights int8 per output channel,
activations uint8 with MinMax ranges calibrated on the decoded images (the U8S8 layout ONNX
Runtime's int8 kernels run fastest on x86_64 with VNNI and on aarch64). It needs ``onnx`` and
``ml_dtypes`` beside ``onnxruntime``: installed where the conversion runs (requirements-job.txt,
the local backend), not on emr-7.13.0's nodes, which then find the int8 model by key as they find
the converted one, and fail naming ``make convert`` when it is missing. The cache key needs only
``onnxruntime`` to compute: the converted model's digest, the calibration, the preprocessing,
:data:`QUANTIZATION_SETTINGS` and ONNX Runtime's version.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import tempfile
import time

import numpy as np

from batch_inference.agreement import decode_sample
from batch_inference.config import JobConfig, ModelSpec
from batch_inference.errors import JobFailed
from batch_inference.model import fetch_verified, parse_labels, sha256_hex
from batch_inference.quantize import (
    MARKER,
    BindBoth,
    FirstKeys,
    calibration_identity,
    calibration_keys,
    calibration_source,
    int8_settings,
    read_record,
)
from batch_inference.runtime import BoundModel, bind_converted
from batch_inference.s3io import parse_s3_uri, put_bytes

log = logging.getLogger(__name__)

MODEL_FILE = "int8.onnx"
#: How the converted model is quantized; part of the cache key.
QUANTIZATION_SETTINGS = {
    "quantizer": "onnxruntime.quantization.quantize_static",
    "pre_process": True,
    "format": "QDQ",
    "per_channel": True,
    "activations": "QUInt8",
    "weights": "QInt8",
    "calibrate_method": "MinMax",
}
#: Images per calibration batch fed to the quantizer.
CALIBRATION_BATCH = 16


def quantizer_installed() -> bool:
    """Whether ONNX Runtime's quantizer can be imported here (it needs onnx and ml_dtypes)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "ml_dtypes"))


def cache_key(onnx_sha256: str, config: JobConfig) -> str:
    """What the int8 model depends on: the converted fp32 model, the calibration and the
    quantizer."""
    import onnxruntime

    document = {
        "onnx_sha256": onnx_sha256,
        **calibration_identity(config),
        "settings": QUANTIZATION_SETTINGS,
        "onnxruntime": onnxruntime.__version__,
    }
    return sha256_hex(json.dumps(document, sort_keys=True).encode())


def quantize(onnx: bytes, calibration: np.ndarray, input_name: str) -> bytes:
    """The int8 ONNX file of ``onnx`` (the fp32 file's bytes), calibrated on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {input_name: calibration[start : start + CALIBRATION_BATCH]}
                for start in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as folder:
        fp32, prepared, int8 = (
            os.path.join(folder, name) for name in ("f.onnx", "p.onnx", "q.onnx")
        )
        with open(fp32, "wb") as handle:
            handle.write(onnx)
        quant_pre_process(fp32, prepared)
        quantize_static(
            prepared,
            int8,
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        with open(int8, "rb") as quantized:
            return quantized.read()


def onnx_int8(
    client, config: JobConfig, first_keys: FirstKeys, made_for: str
) -> tuple[ModelSpec, BindBoth]:
    """The int8 model of ``config.model`` (the converted fp32 model): read from the cache (its
    digest checked), or quantized and cached now on a miss where the quantizer is installed, for
    ``made_for`` (a run's manifest, or an input prefix) whose first keys ``first_keys`` gives."""
    spec = config.model
    assert spec.onnx_uri is not None  # the converted model's (prepare_runtime ran first)
    fp32 = fetch_verified(client, spec.onnx_uri, spec.onnx_sha256, "the ONNX model")
    labels = parse_labels(
        fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels"),
        spec.labels_uri,
    )
    cache = parse_s3_uri(int8_settings(config).cache_uri, "--int8-cache", prefix=True)
    folder = cache.join(cache_key(sha256_hex(fp32), config), "")  # "": a prefix, "<key>/"
    int8_uri = folder.join(MODEL_FILE)
    record = read_record(client, folder)
    if record is not None:
        log.info("int8: reusing the quantized model in %s", folder)
        int8 = fetch_verified(client, str(int8_uri), record["onnx_sha256"], "the int8 ONNX model")
    elif not quantizer_installed():
        raise JobFailed(
            f"precision int8 on {spec.runtime}: no int8 model of {spec.onnx_uri} in {folder}, and "
            "ONNX Runtime's quantizer (onnx, ml_dtypes) is not installed here to make it: make it "
            "first where it is (make convert PIPELINE=<pipeline> DATE=<a date of its input>)"
        )
    else:
        started = time.monotonic()
        calibration = decode_sample(
            client, calibration_keys(client, int8_settings(config), first_keys), config, "int8"
        )
        int8 = quantize(fp32, calibration, spec.input_name)
        extra = config.encryption.put_object_args()
        put_bytes(client, int8_uri, int8, "application/octet-stream", extra)
        record = {
            "onnx_sha256": sha256_hex(int8),
            "fp32_onnx": spec.onnx_uri,
            "fp32_onnx_sha256": sha256_hex(fp32),
            "calibration_images": len(calibration),
            "calibration": calibration_source(config, made_for),
            "settings": QUANTIZATION_SETTINGS,
            "seconds": round(time.monotonic() - started, 3),
        }
        put_bytes(client, folder.join(MARKER), json.dumps(record).encode(), "application/json",
                  extra)  # fmt: skip
        log.info("int8: quantized %s in %.1fs into %s", spec.onnx_uri, record["seconds"], folder)
    int8_spec = dataclasses.replace(spec, onnx_uri=str(int8_uri), onnx_sha256=record["onnx_sha256"])

    def bind_both(batch: int, size: int) -> tuple[BoundModel, BoundModel]:
        return (
            bind_converted(spec, fp32, labels, batch, size),
            bind_converted(int8_spec, int8, labels, batch, size),
        )

    return int8_spec, bind_both
