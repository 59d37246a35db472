"""A runtime other than MXNet: the pipeline's MXNet model converted once to ONNX, gated by top-1
agreement with the MXNet forward, cached by content (or the pipeline's own ONNX file, run as it is:
:func:`pinned_onnx`).

On the driver, before any task (:func:`prepare_runtime`):

1. The converted model is looked up in the cache, ``<--conversion-cache><key>/``, where the key
   is the SHA-256 of the MXNet files' digests (the pipeline's ``symbol_sha256`` and
   ``params_sha256`` when it gives them: a node without MXNet then downloads neither file), the
   input (name and image size) and
   :data:`CONVERSION_SETTINGS` (the converter: MXNet's last release and the onnx release its
   operator tables target, which decides the opset). The key needs no
   MXNet to compute, so a node without MXNet finds a model converted elsewhere.
   ``conversion.json``, the record of the conversion, is written last: a half-written entry is
   never found.
2. On a miss it is made where MXNet is installed (the local backend, an emr-7.2.0 node):
   ``mxnet.onnx.export_model`` with a dynamic batch axis, the weights kept out of the graph's
   inputs (so ONNX Runtime folds them as constants), and a metadata flag saying whether the graph
   ends in a softmax. Its top-1 agreement with MXNet's fp32 forward is measured on
   :data:`AGREEMENT_IMAGES` of this run's own images (from the middle of the manifest); below
   ``--conversion-min-agreement`` the job fails naming the agreement and nothing is cached. A
   conversion that changes answers is a converter bug, not a precision trade-off: there is no
   fallback.
3. On a hit, where MXNet is installed, the agreement is measured again on this run's images (the
   same gate); without MXNet the record's agreement, measured on the run that converted, stands
   and the log says so.

The tasks load the ONNX file like any model file (URI and SHA-256 from the record); every run's
summary says the runtime and the agreement.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable

from batch_inference.agreement import decode_sample, middle_keys, top1_agreement
from batch_inference.config import JobConfig, ModelSpec
from batch_inference.errors import JobFailed
from batch_inference.manifest import Manifest
from batch_inference.model import (
    bind_model,
    fetch_verified,
    outputs_probabilities,
    parse_labels,
    sha256_hex,
)
from batch_inference.runtime import PROBABILITIES_KEY, bind_converted
from batch_inference.s3io import S3Uri, get_bytes, parse_s3_uri, put_bytes

log = logging.getLogger(__name__)

MARKER = "conversion.json"
MODEL_FILE = "model.onnx"
#: How a model is converted; part of the cache key: change it and every model is converted again.
CONVERSION_SETTINGS = {
    "converter": "mxnet.onnx.export_model",
    "mxnet": "1.9.1",  # MXNet's last release (the project is archived)
    "onnx": "1.16.2",  # requirements-job.txt's pin (a test holds them equal)
    "dynamic_batch": True,
}
#: Images of the run the converted model's agreement with MXNet is measured on.
AGREEMENT_IMAGES = 256


def mxnet_installed() -> bool:
    """Whether this interpreter can import MXNet (to convert, and to measure the agreement)."""
    return importlib.util.find_spec("mxnet") is not None


def cache_key(spec: ModelSpec, symbol_sha256: str, params_sha256: str, image_size: int) -> str:
    """What the converted model depends on: the MXNet files (their SHA-256), the input and the
    settings."""
    document = {
        "symbol_sha256": symbol_sha256,
        "params_sha256": params_sha256,
        "input_name": spec.input_name,
        "image_size": image_size,
        "settings": CONVERSION_SETTINGS,
    }
    return sha256_hex(json.dumps(document, sort_keys=True).encode())


def inference_head(symbol_json: str) -> str:
    """The symbol with a ``SoftmaxOutput`` head (the training head classic Module-trained models
    end in, with a label input that ``mxnet.onnx`` cannot export) replaced by the softmax it
    computes at inference; any other symbol as it is."""
    import mxnet as mx

    graph = json.loads(symbol_json)
    head = graph["nodes"][graph["heads"][0][0]]
    if head["op"] != "SoftmaxOutput":
        return symbol_json
    scores = mx.sym.load_json(symbol_json).get_children()[0]  # its inputs: scores, label
    return mx.sym.softmax(scores, axis=1, name=head["name"]).tojson()


def export_onnx(symbol_json: str, params: bytes, input_name: str, image_size: int) -> bytes:
    """The ONNX file of an MXNet model: batch axis dynamic, weights as initializers only, a
    training softmax head exported as its inference softmax."""
    import numpy as np
    import onnx
    from mxnet import onnx as mx_onnx

    symbol_json = inference_head(symbol_json)

    with tempfile.TemporaryDirectory() as folder:
        # mxnet.onnx finds the params beside the symbol by MXNet's own naming
        symbol_path = os.path.join(folder, "model-symbol.json")
        params_path = os.path.join(folder, "model-0000.params")
        onnx_path = os.path.join(folder, MODEL_FILE)
        with open(symbol_path, "w", encoding="utf-8") as handle:
            handle.write(symbol_json)
        with open(params_path, "wb") as handle:
            handle.write(params)
        mx_onnx.export_model(
            symbol_path,
            params_path,
            in_shapes=[(1, 3, image_size, image_size)],
            in_types=[np.float32],
            onnx_file_path=onnx_path,
            dynamic=True,
            dynamic_input_shapes=[("batch", 3, image_size, image_size)],
        )
        model = onnx.load(onnx_path)
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [item for item in model.graph.input if item.name not in weights]
    if [item.name for item in inputs] != [input_name]:
        raise JobFailed(f"conversion: the ONNX graph's inputs are {[i.name for i in inputs]}")
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    flag = model.metadata_props.add()
    flag.key = PROBABILITIES_KEY
    flag.value = "true" if outputs_probabilities(symbol_json) else "false"
    return model.SerializeToString()


def read_record(client, folder: S3Uri) -> dict | None:
    """The cache entry's record, or ``None`` when there is none (a miss)."""
    try:
        return json.loads(get_bytes(client, folder.join(MARKER)))
    except Exception:
        return None


@dataclasses.dataclass(frozen=True)
class MxnetModel:
    """The pipeline's MXNet model as downloaded and verified on the driver."""

    spec: ModelSpec
    symbol: bytes
    params: bytes
    labels: list[str]

    @classmethod
    def fetch(cls, client, spec: ModelSpec) -> MxnetModel:
        """Download the three files and check their digests."""
        labels = fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels")
        return cls(
            spec=spec,
            symbol=fetch_verified(client, spec.symbol_uri, spec.symbol_sha256, "--model-symbol"),
            params=fetch_verified(client, spec.params_uri, spec.params_sha256, "--model-params"),
            labels=parse_labels(labels, spec.labels_uri),
        )


#: The image keys the agreement is measured on (listed only when it is measured).
Sample = Callable[[], list[str]]


def measure(
    client, config: JobConfig, sample: Sample, source: MxnetModel, onnx: bytes, onnx_uri: str
):
    """``(agreement, images)``: top-1 agreement of the ONNX model (``onnx``, the file at
    ``onnx_uri``) with MXNet on ``sample``."""
    tensors = decode_sample(client, sample(), config, "conversion")
    batch, size = min(config.batch_size, len(tensors)), config.preprocess.image_size
    symbol_json, labels = source.symbol.decode("utf-8"), source.labels
    reference = bind_model(source.spec, symbol_json, source.params, labels, batch, size)
    spec = dataclasses.replace(source.spec, onnx_uri=onnx_uri)
    candidate = bind_converted(spec, onnx, labels, batch, size)
    return top1_agreement(reference, candidate, tensors), len(tensors)


def gate(config: JobConfig, agreement: float, images: int, where: str) -> None:
    """Log the agreement; :class:`JobFailed` below ``--conversion-min-agreement``."""
    assert config.conversion is not None  # a converted runtime's config has it (JobConfig checks)
    minimum = config.conversion.min_agreement
    log.info(
        "conversion: %s top-1 agreement with MXNet %.2f%% on %d images %s (minimum %.2f%%)",
        config.model.runtime,
        agreement * 100,
        images,
        where,
        minimum * 100,
    )
    if agreement < minimum:
        raise JobFailed(
            f"the model converted for {config.model.runtime} agrees with MXNet's top-1 on "
            f"{agreement:.2%} of {images} images {where}, below --conversion-min-agreement "
            f"{minimum:.2%}"
        )


def convert(
    client,
    config: JobConfig,
    sample: Sample,
    measured_on: str,
    source: MxnetModel,
    folder: S3Uri,
) -> dict:
    """Convert, gate on the images of ``sample`` (from ``measured_on``) and cache; returns the
    record."""
    started = time.monotonic()
    onnx = export_onnx(
        source.symbol.decode("utf-8"),
        source.params,
        source.spec.input_name,
        config.preprocess.image_size,
    )
    onnx_uri = str(folder.join(MODEL_FILE))
    agreement, images = measure(client, config, sample, source, onnx, onnx_uri)
    gate(config, agreement, images, f"of {measured_on}")
    import onnx as onnx_package

    extra = config.encryption.put_object_args()
    put_bytes(client, folder.join(MODEL_FILE), onnx, "application/octet-stream", extra)
    record = {
        "onnx_sha256": sha256_hex(onnx),
        "mxnet_symbol": source.spec.symbol_uri,
        "mxnet_params": source.spec.params_uri,
        "symbol_sha256": sha256_hex(source.symbol),
        "params_sha256": sha256_hex(source.params),
        "settings": CONVERSION_SETTINGS,
        "onnx": onnx_package.__version__,
        "opset": max(item.version for item in onnx_package.load_from_string(onnx).opset_import),
        "agreement": agreement,
        "agreement_images": images,
        "measured_on": measured_on,
        "seconds": round(time.monotonic() - started, 3),
    }
    put_bytes(client, folder.join(MARKER), json.dumps(record).encode(), "application/json", extra)
    name, seconds = source.spec.name, record["seconds"]
    log.info("conversion: converted %s in %.1fs into %s", name, seconds, folder)
    return record


def converted_model(
    client, config: JobConfig, sample: Sample, measured_on: str
) -> tuple[ModelSpec, float]:
    """``(spec, agreement)``: the model converted for ``config.model.runtime`` (from the cache, or
    converted now and cached) and its gated top-1 agreement with MXNet, measured on the images of
    ``sample`` (from ``measured_on``: a run's manifest, or an input prefix) where MXNet is
    installed, else as recorded when it was converted (see the module docstring)."""
    spec = config.model
    source = None
    if spec.symbol_sha256 and spec.params_sha256:  # the pipeline's digests: no download to key
        digests = spec.symbol_sha256.strip().lower(), spec.params_sha256.strip().lower()
    else:
        source = MxnetModel.fetch(client, spec)
        digests = sha256_hex(source.symbol), sha256_hex(source.params)
    assert config.conversion is not None  # a converted runtime's config has it (JobConfig checks)
    cache = parse_s3_uri(config.conversion.cache_uri, "--conversion-cache", prefix=True)
    key = cache_key(spec, *digests, config.preprocess.image_size)
    folder = cache.join(key, "")  # "": a prefix, "<key>/"
    record = read_record(client, folder)
    can_measure = mxnet_installed()
    fresh = record is None
    if can_measure and source is None:  # converting or measuring: MXNet's forward needs them
        source = MxnetModel.fetch(client, spec)
    if record is None:
        if not can_measure:
            raise JobFailed(
                f"runtime {config.model.runtime}: no converted model for {config.model.symbol_uri} "
                f"in {folder}, and MXNet is not installed here to convert it: convert it first "
                "where MXNet is (make convert PIPELINE=<pipeline> DATE=<a date of its input>)"
            )
        assert source is not None  # fetched above, MXNet being installed
        record = convert(client, config, sample, measured_on, source, folder)  # gated
    else:
        log.info("conversion: reusing the converted model in %s", folder)
    onnx_uri = str(folder.join(MODEL_FILE))
    spec = dataclasses.replace(spec, onnx_uri=onnx_uri, onnx_sha256=record["onnx_sha256"])
    agreement = record["agreement"]
    if not fresh and can_measure:
        assert source is not None  # fetched above, MXNet being installed
        onnx = fetch_verified(client, onnx_uri, spec.onnx_sha256, "the ONNX model")
        agreement, images = measure(client, config, sample, source, onnx, onnx_uri)
        gate(config, agreement, images, f"of {measured_on}")
    elif not fresh:
        where = f"of {record['measured_on']} (measured when converted; no MXNet here)"
        gate(config, agreement, record["agreement_images"], where)
    return spec, agreement


def pinned_onnx(client, spec: ModelSpec) -> ModelSpec:
    """The pipeline's own ONNX file (``--model-onnx``), downloaded once on the driver: checked
    against ``--model-onnx-sha256`` when given, and pinned to the digest it has now either way, so
    every task loads these same bytes (a file replaced during the run fails its tasks rather than
    mixing two models' rows) and the run fingerprint covers its content."""
    assert spec.onnx_uri is not None  # spec.given_onnx
    data = fetch_verified(client, spec.onnx_uri, spec.onnx_sha256, "--model-onnx")
    digest = sha256_hex(data)
    log.info(
        "runtime %s: the pipeline's own ONNX model %s (sha256 %s, %.1f MB): no conversion, no "
        "agreement with MXNet to measure",
        spec.runtime,
        spec.onnx_uri,
        digest,
        len(data) / 1e6,
    )
    return dataclasses.replace(spec, onnx_sha256=digest)


def prepare_runtime(client, config: JobConfig, manifest: Manifest) -> JobConfig:
    """The config the tasks run with: the pipeline's own ONNX file (:func:`pinned_onnx`), or the
    converted model of :func:`converted_model`, gated on :data:`AGREEMENT_IMAGES` of this run's
    own images (from the middle of its manifest)."""
    if config.model.given_onnx:
        return dataclasses.replace(config, model=pinned_onnx(client, config.model))
    spec, agreement = converted_model(
        client,
        config,
        lambda: middle_keys(client, manifest, AGREEMENT_IMAGES),
        config.manifest_uri,
    )
    return dataclasses.replace(config, model=spec, conversion_agreement=agreement)
