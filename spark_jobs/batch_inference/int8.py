"""The int8 gate: the run's runtime quantizes, then the run's own images decide (see
:mod:`batch_inference.quantize` for MXNet's int8 model and the cache, and
:mod:`batch_inference.quantize_onnx` for the converted runtimes')."""

from __future__ import annotations

import dataclasses
import logging

from batch_inference.agreement import decode_sample, middle_keys, top1_agreement
from batch_inference.config import JobConfig, ModelSpec
from batch_inference.errors import JobFailed
from batch_inference.manifest import Manifest
from batch_inference.quantize import int8_settings, manifest_keys, mxnet_int8

log = logging.getLogger(__name__)


def prepare_int8(client, config: JobConfig, manifest: Manifest) -> JobConfig:
    """The config the tasks run with: the int8 model of the run's runtime when it agrees with fp32
    often enough on this run's images, else fp32 (``--int8-fallback``) or :class:`JobFailed`.
    With a runtime other than MXNet, ``config.model`` is the converted fp32 model
    (:func:`batch_inference.convert.prepare_runtime` runs first)."""
    first_keys = manifest_keys(client, manifest)
    if config.model.runtime == "mxnet":
        int8_spec, bind_both = mxnet_int8(client, config, first_keys)
    else:
        from batch_inference.quantize_onnx import onnx_int8

        int8_spec, bind_both = onnx_int8(client, config, first_keys, config.manifest_uri)
    keys = middle_keys(client, manifest, int8_settings(config).agreement_images)
    tensors = decode_sample(client, keys, config, "int8")
    fp32, int8 = bind_both(min(config.batch_size, len(tensors)), config.preprocess.image_size)
    return int8_gate(config, int8_spec, top1_agreement(fp32, int8, tensors), len(tensors))


def int8_gate(config: JobConfig, int8_spec: ModelSpec, agreement: float, images: int) -> JobConfig:
    """``config`` with the int8 model when ``agreement`` (on ``images`` of this run) reaches
    ``--int8-min-agreement``; else in fp32 with ``--int8-fallback``, or :class:`JobFailed`."""
    settings = int8_settings(config)
    log.info(
        "int8: top-1 agreement with fp32 %.2f%% on %d images of this run (minimum %.2f%%; %s)",
        agreement * 100,
        images,
        settings.min_agreement * 100,
        config.model.runtime,
    )
    if agreement >= settings.min_agreement:
        return dataclasses.replace(
            config, model=int8_spec, precision="int8", int8_agreement=agreement
        )
    message = (
        f"int8 top-1 agreement with fp32 is {agreement:.2%} on {images} images of this run, "
        f"below --int8-min-agreement {settings.min_agreement:.2%}"
    )
    if not settings.fallback:
        raise JobFailed(message)
    log.warning("%s: running in fp32 (--int8-fallback)", message)
    return dataclasses.replace(config, precision="fp32", int8_agreement=agreement)
