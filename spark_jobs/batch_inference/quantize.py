"""int8 inference: the model quantized once, gated by measured top-1 agreement with fp32.

On the driver, before any task (:func:`batch_inference.int8.prepare_int8`):

1. The int8 model is looked up in the cache, ``<--int8-cache><key>/``, where the key is the
   SHA-256 of what the int8 model depends on: the fp32 model's digests, the calibration source
   and size, the quantization settings and the quantizer's version. ``quantization.json`` is
   written last, so a half-written entry is never found.
2. On a miss it is made by the runtime's own quantizer, calibrated on ``--calibration-images``
   decoded images (from ``--calibration-uri``, else the first images of this run's manifest: the
   first int8 run calibrates and later runs reuse its model):

   * ``--runtime mxnet``: ``mxnet.contrib.quantization.quantize_model_mkldnn`` (oneDNN), naive
     calibration, with FullyConnected layers kept in fp32 (MXNet 1.9.1 cannot bind a quantized
     fused dense layer: "Type inconsistent, Provided = float32, inferred type = int8");
   * ``--runtime onnxruntime``: ONNX Runtime's static quantizer on the converted model
     (:mod:`batch_inference.quantize_onnx`).
3. Every run then measures the top-1 agreement of int8 with fp32 (the same runtime's fp32 model)
   on ``--agreement-images`` of its own images (from the middle of the manifest) and refuses int8
   below ``--int8-min-agreement``: the job fails naming the agreement, or with ``--int8-fallback``
   runs in fp32.

The tasks load the int8 model like any other model (its cached URIs and digests); every row says
which precision produced it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from batch_inference.agreement import decode_sample
from batch_inference.config import Int8Settings, JobConfig, ModelSpec
from batch_inference.errors import JobFailed
from batch_inference.manifest import Manifest, iter_keys
from batch_inference.model import (
    bind_model,
    fetch_verified,
    parse_labels,
    sha256_hex,
    split_params,
)
from batch_inference.runtime import BoundModel
from batch_inference.s3io import S3Uri, get_bytes, parse_s3_uri, put_bytes

log = logging.getLogger(__name__)

MARKER = "quantization.json"
#: Bump when the way a model is quantized changes: it is part of the cache key.
QUANTIZATION_SETTINGS = {"calib_mode": "naive", "quantized_dtype": "auto", "fp32_ops": ["FC"]}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


#: The first ``n`` image keys of what int8 is made for (a run's manifest, an input prefix).
FirstKeys = Callable[[int], list[str]]


def int8_settings(config: JobConfig) -> Int8Settings:
    """``config.int8``: an int8 run's config always has it (:class:`JobConfig` checks)."""
    assert config.int8 is not None
    return config.int8


def calibration_keys(client, settings: Int8Settings, first_keys: FirstKeys) -> list[str]:
    """``--calibration-images`` keys: listed under ``--calibration-uri``, else the first of what
    int8 is made for (``first_keys``)."""
    if settings.calibration_uri is None:
        return first_keys(settings.calibration_images)
    prefix = parse_s3_uri(settings.calibration_uri, "--calibration-uri")
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=prefix.bucket, Prefix=prefix.key
    ):
        for item in page.get("Contents", []):
            if item["Key"].lower().endswith(IMAGE_SUFFIXES):
                keys.append(f"s3://{prefix.bucket}/{item['Key']}")
                if len(keys) == settings.calibration_images:
                    return keys
    if not keys:
        raise JobFailed(f"--calibration-uri {settings.calibration_uri} holds no image")
    return keys


def manifest_keys(client, manifest: Manifest) -> FirstKeys:
    """The first ``n`` keys of a run's manifest (all when it has fewer)."""
    return lambda count: list(iter_keys(client, manifest, 0, min(count, manifest.total)))


def cache_key(symbol: bytes, params: bytes, config: JobConfig) -> str:
    """What the quantized model depends on: the fp32 files, the calibration and the settings."""
    import mxnet as mx

    document = {
        "symbol_sha256": sha256_hex(symbol),
        "params_sha256": sha256_hex(params),
        **calibration_identity(config),
        "settings": QUANTIZATION_SETTINGS,
        "mxnet": mx.__version__,
    }
    return sha256_hex(json.dumps(document, sort_keys=True).encode())


def calibration_identity(config: JobConfig) -> dict:
    """What an int8 model's calibration depends on (every runtime's cache key has it): the source
    and count of the images, and how they are decoded."""
    return {
        "calibration": int8_settings(config).calibration_uri or "run",
        "calibration_images": int8_settings(config).calibration_images,
        "preprocess": dataclasses.asdict(config.preprocess),
    }


def quantize(symbol_json: str, params: bytes, calibration: np.ndarray, input_name: str):
    """``(symbol JSON, params bytes)`` of the int8 model, calibrated on ``calibration``."""
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_model_mkldnn

    symbol = mx.sym.load_json(symbol_json)
    arg_params, aux_params = split_params(symbol, mx.nd.load_frombuffer(params))
    dense = [n["name"] for n in json.loads(symbol_json)["nodes"] if n["op"] == "FullyConnected"]
    batch = min(len(calibration), 32)
    data = mx.io.NDArrayIter(data={input_name: calibration}, batch_size=batch)
    qsym, qargs, qaux = quantize_model_mkldnn(
        sym=symbol,
        arg_params=arg_params,
        aux_params=aux_params,
        data_names=(input_name,),
        label_names=(),
        ctx=mx.cpu(),
        excluded_sym_names=dense,
        calib_mode="naive",
        calib_data=data,
        num_calib_examples=len(calibration),
        quantized_dtype="auto",
        logger=None,
    )
    saved = {f"arg:{k}": v for k, v in qargs.items()} | {f"aux:{k}": v for k, v in qaux.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "int8.params")
        mx.nd.save(path, saved)
        with open(path, "rb") as handle:
            return qsym.tojson(), handle.read()


def read_record(client, folder: S3Uri) -> dict | None:
    """The cache entry's ``quantization.json``, or ``None`` when there is none (a miss)."""
    try:
        return json.loads(get_bytes(client, folder.join(MARKER)))
    except Exception:
        return None


def calibration_source(config: JobConfig, made_for: str) -> str:
    """What the record says the int8 model was calibrated on."""
    return int8_settings(config).calibration_uri or f"{made_for} (first keys)"


#: ``(batch_size, image_size) -> (fp32, int8)``: both models bound for the agreement gate.
BindBoth = Callable[[int, int], tuple[BoundModel, BoundModel]]


def mxnet_int8(client, config: JobConfig, first_keys: FirstKeys) -> tuple[ModelSpec, BindBoth]:
    """The int8 model of MXNet's oneDNN quantization: read from the cache (the digests its record
    gives checked), or quantized and cached now on a miss."""
    spec = config.model
    symbol = fetch_verified(client, spec.symbol_uri, spec.symbol_sha256, "--model-symbol")
    params = fetch_verified(client, spec.params_uri, spec.params_sha256, "--model-params")
    labels = parse_labels(
        fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels"),
        spec.labels_uri,
    )
    cache = parse_s3_uri(int8_settings(config).cache_uri, "--int8-cache", prefix=True)
    folder = cache.join(cache_key(symbol, params, config), "")  # "": a prefix, "<key>/"
    symbol_uri, params_uri = folder.join("int8-symbol.json"), folder.join("int8-0000.params")
    record = read_record(client, folder)
    if record is None:
        started = time.monotonic()
        calibration = decode_sample(
            client, calibration_keys(client, int8_settings(config), first_keys), config, "int8"
        )
        qsymbol_text, qparams = quantize(
            symbol.decode("utf-8"), params, calibration, config.model.input_name
        )
        qsymbol = qsymbol_text.encode()
        extra = config.encryption.put_object_args()
        put_bytes(client, symbol_uri, qsymbol, "application/json", extra)
        put_bytes(client, params_uri, qparams, "application/octet-stream", extra)
        record = {
            "symbol_sha256": sha256_hex(qsymbol),
            "params_sha256": sha256_hex(qparams),
            "fp32_symbol": config.model.symbol_uri,
            "fp32_params": config.model.params_uri,
            "calibration_images": len(calibration),
            "calibration": calibration_source(config, config.manifest_uri),
            "settings": QUANTIZATION_SETTINGS,
            "seconds": round(time.monotonic() - started, 3),
        }
        put_bytes(client, folder.join(MARKER), json.dumps(record).encode(), "application/json",
                  extra)  # fmt: skip
        log.info(
            "int8: quantized %s in %.1fs into %s", config.model.name, record["seconds"], folder
        )
    else:
        log.info("int8: reusing the quantized model in %s", folder)
        qsymbol = fetch_verified(client, str(symbol_uri), record["symbol_sha256"], "int8 symbol")
        qparams = fetch_verified(client, str(params_uri), record["params_sha256"], "int8 params")
    int8_spec = dataclasses.replace(
        config.model,
        symbol_uri=str(symbol_uri),
        params_uri=str(params_uri),
        symbol_sha256=record["symbol_sha256"],
        params_sha256=record["params_sha256"],
    )

    def bind_both(batch: int, size: int) -> tuple[BoundModel, BoundModel]:
        fp32 = bind_model(spec, symbol.decode("utf-8"), params, labels, batch, size)
        int8 = bind_model(int8_spec, qsymbol.decode("utf-8"), qparams, labels, batch, size)
        return fp32, int8

    return int8_spec, bind_both
