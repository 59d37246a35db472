"""int8 inference: the model quantized once with MXNet's own oneDNN quantization, gated by
measured top-1 agreement with fp32.

On the driver, before any task (:func:`prepare_int8`):

1. The int8 model is looked up in the cache, ``<--int8-cache><key>/``, where the key is the
   SHA-256 of the fp32 model's file digests, the calibration source and size, the quantization
   settings and MXNet's version. ``quantization.json`` is written last, so a half-written entry is
   never found.
2. On a miss it is made: ``mxnet.contrib.quantization.quantize_model_mkldnn``, naive calibration
   on ``--calibration-images`` decoded images (from ``--calibration-uri``, else the first images
   of this run's manifest: the first int8 run calibrates and later runs reuse its model), with
   FullyConnected layers kept in fp32 (MXNet 1.9.1 cannot bind a quantized fused dense layer:
   "Type inconsistent, Provided = float32, inferred type = int8").
3. Every run then measures the top-1 agreement of int8 with fp32 on ``--agreement-images`` of its
   own images (from the middle of the manifest) and refuses int8 below ``--int8-min-agreement``:
   the job fails naming the agreement, or with ``--int8-fallback`` runs in fp32.

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

import numpy as np

from batch_inference.agreement import decode_sample, middle_keys, top1_agreement
from batch_inference.config import JobConfig
from batch_inference.errors import JobFailed
from batch_inference.manifest import Manifest, iter_keys
from batch_inference.model import (
    bind_model,
    fetch_verified,
    parse_labels,
    sha256_hex,
    split_params,
)
from batch_inference.s3io import get_bytes, parse_s3_uri, put_bytes

log = logging.getLogger(__name__)

MARKER = "quantization.json"
#: Bump when the way a model is quantized changes: it is part of the cache key.
QUANTIZATION_SETTINGS = {"calib_mode": "naive", "quantized_dtype": "auto", "fp32_ops": ["FC"]}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def calibration_keys(client, config: JobConfig, manifest: Manifest) -> list[str]:
    """``--calibration-images`` keys: listed under ``--calibration-uri``, else the run's first."""
    settings = config.int8
    if settings.calibration_uri is None:
        return list(
            iter_keys(client, manifest, 0, min(settings.calibration_images, manifest.total))
        )
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


def cache_key(symbol: bytes, params: bytes, config: JobConfig) -> str:
    """What the quantized model depends on: the fp32 files, the calibration and the settings."""
    import mxnet as mx

    settings = config.int8
    document = {
        "symbol_sha256": sha256_hex(symbol),
        "params_sha256": sha256_hex(params),
        "calibration": settings.calibration_uri or "run",
        "calibration_images": settings.calibration_images,
        "preprocess": dataclasses.asdict(config.preprocess),
        "settings": QUANTIZATION_SETTINGS,
        "mxnet": mx.__version__,
    }
    return sha256_hex(json.dumps(document, sort_keys=True).encode())


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


def _cached(client, folder) -> dict | None:
    try:
        return json.loads(get_bytes(client, folder.join(MARKER)))
    except Exception:
        return None


def int8_model(client, config: JobConfig, manifest: Manifest, symbol: bytes, params: bytes):
    """``(ModelSpec of the cached int8 model, its symbol, its params)``: read from the cache (the
    digests its record gives checked), or quantized and cached now on a miss."""
    cache = parse_s3_uri(config.int8.cache_uri, "--int8-cache", prefix=True)
    folder = cache.join(cache_key(symbol, params, config), "")  # "": a prefix, "<key>/"
    symbol_uri, params_uri = folder.join("int8-symbol.json"), folder.join("int8-0000.params")
    record = _cached(client, folder)
    if record is None:
        started = time.monotonic()
        keys = calibration_keys(client, config, manifest)
        calibration = decode_sample(client, keys, config, "int8")
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
            "calibration": config.int8.calibration_uri or f"{config.manifest_uri} (first keys)",
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
    spec = dataclasses.replace(
        config.model,
        symbol_uri=str(symbol_uri),
        params_uri=str(params_uri),
        symbol_sha256=record["symbol_sha256"],
        params_sha256=record["params_sha256"],
    )
    return spec, qsymbol, qparams


def prepare_int8(client, config: JobConfig, manifest: Manifest) -> JobConfig:
    """The config the tasks run with: the int8 model when it agrees with fp32 often enough on
    this run's images, else fp32 (``--int8-fallback``) or :class:`JobFailed`."""
    spec = config.model
    symbol = fetch_verified(client, spec.symbol_uri, spec.symbol_sha256, "--model-symbol")
    params = fetch_verified(client, spec.params_uri, spec.params_sha256, "--model-params")
    labels = parse_labels(
        fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels"),
        spec.labels_uri,
    )
    int8_spec, int8_symbol, int8_params = int8_model(client, config, manifest, symbol, params)
    keys = middle_keys(client, manifest, config.int8.agreement_images)
    tensors = decode_sample(client, keys, config, "int8")
    batch, size = min(config.batch_size, len(tensors)), config.preprocess.image_size
    fp32 = bind_model(spec, symbol.decode("utf-8"), params, labels, batch, size)
    int8 = bind_model(int8_spec, int8_symbol.decode("utf-8"), int8_params, labels, batch, size)
    agreement = top1_agreement(fp32, int8, tensors)
    settings = config.int8
    log.info(
        "int8: top-1 agreement with fp32 %.2f%% on %d images of this run (minimum %.2f%%)",
        agreement * 100,
        len(tensors),
        settings.min_agreement * 100,
    )
    if agreement >= settings.min_agreement:
        return dataclasses.replace(
            config, model=int8_spec, precision="int8", int8_agreement=agreement
        )
    message = (
        f"int8 top-1 agreement with fp32 is {agreement:.2%} on {len(tensors)} images of this run, "
        f"below --int8-min-agreement {settings.min_agreement:.2%}"
    )
    if not settings.fallback:
        raise JobFailed(message)
    log.warning("%s: running in fp32 (--int8-fallback)", message)
    return dataclasses.replace(config, precision="fp32", int8_agreement=agreement)
