"""The model: downloaded, verified and bound once per Python worker, then called per batch.

Spark reuses Python workers (``spark.python.worker.reuse``), so the module-level cache below keeps a
loaded model alive across the tasks a worker runs: its files are fetched from S3 and bound once per
worker, not once per partition. :func:`load_model` binds the spec's runtime
(:mod:`batch_inference.runtime`): the MXNet symbol and params here (:class:`LoadedModel`), or the
converted ONNX file in ONNX Runtime. ``mxnet`` is imported lazily, after :func:`set_omp_threads`
has fixed ``OMP_NUM_THREADS`` (MXNet's engine reads it at import time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from batch_inference.config import ModelSpec
from batch_inference.errors import ModelLoadError
from batch_inference.runtime import BoundModel, bind_converted, check_batch, softmax
from batch_inference.s3io import get_bytes, parse_s3_uri

log = logging.getLogger(__name__)

# Output operators whose result already is a probability distribution.
_PROBABILITY_OPS = {"SoftmaxOutput", "softmax", "SoftmaxActivation"}

_CACHE: dict[tuple[ModelSpec, int, int], BoundModel] = {}
_CACHE_LOCK = threading.Lock()


def set_omp_threads(threads: int) -> int:
    """Fix the OpenMP thread count for MXNet in this process; returns the count in effect.

    Must run before the first ``import mxnet`` in the worker; afterwards the engine's pool is
    fixed and a different request is only logged.
    """
    if "mxnet" in sys.modules:
        current = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if current != threads:
            log.warning(
                "mxnet already imported with OMP_NUM_THREADS=%s; cannot change it to %d",
                current or "unset",
                threads,
            )
        return current
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fetch_verified(client, uri: str | None, expected_sha256: str | None, what: str) -> bytes:
    """Download one model file and check its digest; ``what`` names the argument in errors (a
    file the model needs and the arguments do not name is one)."""
    if uri is None:
        raise ModelLoadError(f"{what}: not given, and this model needs it")
    try:
        data = get_bytes(client, parse_s3_uri(uri, what))
    except Exception as exc:
        # a MemoryError (the Python worker's address-space limit) has no message of its own
        raise ModelLoadError(
            f"cannot download {what} {uri}: {str(exc) or type(exc).__name__}"
        ) from None
    if expected_sha256:
        actual = sha256_hex(data)
        if actual.lower() != expected_sha256.strip().lower():
            raise ModelLoadError(
                f"sha256 mismatch for {what} {uri}: expected {expected_sha256}, got {actual}"
            )
    return data


def parse_labels(data: bytes, uri: str) -> list[str]:
    """One label per line (UTF-8); trailing blank lines ignored."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"--model-labels {uri} is not UTF-8: {exc}") from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    return labels


@dataclass
class LoadedModel:
    """A model bound for a fixed batch shape on the CPU.

    ``executor`` is the symbol bound once (``simple_bind``, no gradients) with the parameters
    copied in; each batch is written straight into its input array, one copy of the batch (an
    ``mx.mod.Module`` made two more per batch: ~3 % of a ResNet-18 forward, measured).
    """

    spec: ModelSpec
    labels: list[str]
    batch_size: int
    image_size: int
    executor: Any
    outputs_probabilities: bool

    @property
    def num_classes(self) -> int:
        """Number of output classes (equals the number of labels)."""
        return len(self.labels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for ``n <= batch_size`` images ``(n, 3, S, S)``.

        A short batch is padded with zeros to the bound batch size and the padding's rows dropped.
        """
        count = batch.shape[0]
        check_batch(count, self.batch_size)
        data = self.executor.arg_dict[self.spec.input_name]
        data[:count] = batch
        if count < self.batch_size:
            data[count:] = 0
        self.executor.forward(is_train=False)
        outputs = self.executor.outputs[0].asnumpy()[:count]
        return outputs.astype(np.float64) if self.outputs_probabilities else softmax(outputs)


def outputs_probabilities(symbol_json: str) -> bool:
    """Whether the symbol's output operator already gives a probability distribution."""
    graph = json.loads(symbol_json)
    node_id = graph["heads"][0][0]
    return graph["nodes"][node_id]["op"] in _PROBABILITY_OPS


def split_params(symbol, loaded: dict) -> tuple[dict, dict]:
    """Split a params file (``arg:``/``aux:`` prefixed as exported, or bare names) for binding."""
    aux_names = set(symbol.list_auxiliary_states())
    arg_params: dict[str, Any] = {}
    aux_params: dict[str, Any] = {}
    for name, value in loaded.items():
        bare = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
        (aux_params if bare in aux_names else arg_params)[bare] = value
    return arg_params, aux_params


def bind_model(
    spec: ModelSpec,
    symbol_json: str,
    params: bytes,
    labels: list[str],
    batch_size: int,
    image_size: int,
) -> LoadedModel:
    """Bind the symbol for inference with the downloaded parameters (no S3 access)."""
    import mxnet as mx

    try:
        symbol = mx.sym.load_json(symbol_json)
        data_shape = (batch_size, 3, image_size, image_size)
        if spec.input_name not in symbol.list_arguments():
            raise ModelLoadError(
                f"--input-name {spec.input_name!r} is not an input of the symbol "
                f"(inputs: {', '.join(symbol.list_inputs())})"
            )
        _, out_shapes, _ = symbol.infer_shape(**{spec.input_name: data_shape})
        classes = int(np.prod(out_shapes[0][1:]))
        if classes != len(labels):
            raise ModelLoadError(
                f"--model-labels {spec.labels_uri} has {len(labels)} labels "
                f"but the model outputs {classes} classes"
            )
        arg_params, aux_params = split_params(symbol, mx.nd.load_frombuffer(params))
        inputs = {spec.input_name} | {n for n in symbol.list_arguments() if n.endswith("_label")}
        missing = [n for n in symbol.list_arguments() if n not in inputs and n not in arg_params]
        missing += [n for n in symbol.list_auxiliary_states() if n not in aux_params]
        if missing:
            raise ModelLoadError(
                f"--model-params {spec.params_uri} lacks {len(missing)} parameter(s) of the "
                f"symbol: {', '.join(missing[:5])}"
            )
        executor = symbol.simple_bind(mx.cpu(), grad_req="null", **{spec.input_name: data_shape})
        executor.copy_params_from(arg_params, aux_params, allow_extra_params=True)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {spec.name!r}: {exc}") from None
    return LoadedModel(
        spec=spec,
        labels=labels,
        batch_size=batch_size,
        image_size=image_size,
        executor=executor,
        outputs_probabilities=outputs_probabilities(symbol_json),
    )


def load_model(client, spec: ModelSpec, batch_size: int, image_size: int) -> BoundModel:
    """The model for ``spec``, from this worker's cache or downloaded, verified and bound now."""
    key = (spec, batch_size, image_size)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        started = time.monotonic()
        labels_data = fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels")
        labels = parse_labels(labels_data, spec.labels_uri)
        if spec.runtime == "mxnet":
            symbol = fetch_verified(client, spec.symbol_uri, spec.symbol_sha256, "--model-symbol")
            weights = fetch_verified(client, spec.params_uri, spec.params_sha256, "--model-params")
            try:
                symbol_json = symbol.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ModelLoadError(
                    f"--model-symbol {spec.symbol_uri} is not UTF-8: {exc}"
                ) from None
            model: BoundModel = bind_model(
                spec, symbol_json, weights, labels, batch_size, image_size
            )
        else:
            if spec.onnx_uri is None:
                raise ModelLoadError(f"runtime {spec.runtime} has no converted model to load")
            weights = fetch_verified(client, spec.onnx_uri, spec.onnx_sha256, "the ONNX model")
            model = bind_converted(spec, weights, labels, batch_size, image_size)
        _CACHE.clear()  # one model per worker: a new job's model replaces the old one
        _CACHE[key] = model
        log.info(
            "loaded model %r (%s, %d classes, %.1f MB weights) in %.2fs in worker pid %d",
            spec.name,
            spec.runtime,
            model.num_classes,
            len(weights) / 1e6,
            time.monotonic() - started,
            os.getpid(),
        )
        return model
