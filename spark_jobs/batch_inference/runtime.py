"""The model runtimes: what the partition loop, both engines and the int8 gate call a batch on.

Every runtime's bound model is a :class:`BoundModel`: its labels, the batch size it was bound for,
and ``predict`` (images in, class probabilities out, float64). :func:`batch_inference.model.
load_model` returns one for a :class:`~batch_inference.config.ModelSpec` whatever its
``runtime``, so nothing else in the job knows which runtime it holds:

* ``mxnet``: the symbol and params bound by MXNet (:class:`batch_inference.model.LoadedModel`);
* ``onnxruntime``: the MXNet model converted once to ONNX (:mod:`batch_inference.convert`) and run
  by ONNX Runtime's CPU execution provider (:class:`OnnxModel`);
* ``openvino``: the same ONNX file compiled by OpenVINO for the CPU (:class:`OpenVinoModel`), in
  fp32 arithmetic (OpenVINO would otherwise run bf16 on CPUs that have it: a precision trade-off
  no agreement gate has measured).

The converted runtimes take an int8 model the same way: the converted model quantized by ONNX
Runtime's static quantizer (QDQ, :mod:`batch_inference.quantize_onnx`), which OpenVINO runs with
its own int8 kernels. Their threads are the job's ``--omp-threads`` (``OMP_NUM_THREADS``, which
:func:`batch_inference.model.set_omp_threads` fixes), as MXNet's are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from batch_inference.config import ModelSpec
from batch_inference.errors import ModelLoadError

#: The converted model's metadata key that says its output already is a probability distribution
#: (the MXNet symbol ended in a softmax), so no softmax is applied again.
PROBABILITIES_KEY = "batch_inference.outputs_probabilities"


class BoundModel(Protocol):
    """A model bound for batches of ``(3, S, S)`` float32 images."""

    labels: list[str]
    batch_size: int

    @property
    def num_classes(self) -> int:
        """Number of output classes (equals the number of labels)."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)``, float64, for ``n <= batch_size`` images."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed in float64 for stability."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def check_batch(count: int, batch_size: int) -> None:
    """``ValueError`` unless ``0 < count <= batch_size``."""
    if not 0 < count <= batch_size:
        raise ValueError(f"batch of {count} images for a model bound to {batch_size}")


@dataclass
class ConvertedModel:
    """A converted (ONNX) model bound by a runtime other than MXNet, called like the MXNet one:
    the graph's batch axis is dynamic, so a short batch is not padded."""

    spec: ModelSpec
    labels: list[str]
    batch_size: int
    image_size: int
    #: the graph ends in a softmax (its metadata says so): no softmax is applied again
    outputs_probabilities: bool

    @property
    def num_classes(self) -> int:
        """Number of output classes (equals the number of labels)."""
        return len(self.labels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for ``n <= batch_size`` images ``(n, 3, S, S)``."""
        check_batch(batch.shape[0], self.batch_size)
        outputs = self.forward(np.ascontiguousarray(batch, dtype=np.float32))
        return outputs.astype(np.float64) if self.outputs_probabilities else softmax(outputs)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The graph's output for a float32 batch (the runtime's call)."""
        raise NotImplementedError


@dataclass
class OnnxModel(ConvertedModel):
    """An ONNX model in an ONNX Runtime session (CPU)."""

    session: Any

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The session's first output."""
        return self.session.run(None, {self.spec.input_name: batch})[0]


def omp_threads() -> int:
    """The thread count :func:`batch_inference.model.set_omp_threads` fixed (0: the runtime's
    default, every core)."""
    return int(os.environ.get("OMP_NUM_THREADS", "0") or 0)


def bind_onnx(
    spec: ModelSpec, model: bytes, labels: list[str], batch_size: int, image_size: int
) -> OnnxModel:
    """An ONNX Runtime session over ``model`` (the file's bytes), checked against the labels and
    the input the job feeds (no S3 access)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = omp_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the graph warnings are not the reader's
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"cannot load the ONNX model {spec.onnx_uri}: {exc}") from None
    inputs = {item.name: item.shape for item in session.get_inputs()}
    if spec.input_name not in inputs:
        raise ModelLoadError(
            f"--input-name {spec.input_name!r} is not an input of the ONNX model "
            f"{spec.onnx_uri} (inputs: {', '.join(inputs)})"
        )
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(labels):
        raise ModelLoadError(
            f"--model-labels {spec.labels_uri} has {len(labels)} labels "
            f"but the ONNX model outputs {classes} classes"
        )
    metadata = session.get_modelmeta().custom_metadata_map
    return OnnxModel(
        spec=spec,
        labels=labels,
        batch_size=batch_size,
        image_size=image_size,
        session=session,
        outputs_probabilities=metadata.get(PROBABILITIES_KEY) == "true",
    )


@dataclass
class OpenVinoModel(ConvertedModel):
    """An ONNX model compiled by OpenVINO for the CPU."""

    compiled: Any

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The compiled model's first output."""
        return self.compiled(batch)[0]


def bind_openvino(
    spec: ModelSpec, model: bytes, labels: list[str], batch_size: int, image_size: int
) -> OpenVinoModel:
    """The ONNX file ``model`` read and compiled by OpenVINO for the CPU, checked against the labels
    and the input the job feeds (no S3 access)."""
    import openvino as ov

    core = ov.Core()
    try:
        graph = core.read_model(model=model, weights=b"")  # ONNX bytes: read_model infers it
        inputs = {port.get_any_name(): port for port in graph.inputs}
        if spec.input_name not in inputs:
            raise ModelLoadError(
                f"--input-name {spec.input_name!r} is not an input of the ONNX model "
                f"{spec.onnx_uri} (inputs: {', '.join(inputs)})"
            )
        classes = graph.outputs[0].get_partial_shape()[-1]
        if classes.is_static and classes.get_length() != len(labels):
            raise ModelLoadError(
                f"--model-labels {spec.labels_uri} has {len(labels)} labels "
                f"but the ONNX model outputs {classes.get_length()} classes"
            )
        path = ["framework", PROBABILITIES_KEY]  # where OpenVINO keeps ONNX's metadata_props
        probabilities = graph.has_rt_info(path) and graph.get_rt_info(path).astype(str) == "true"
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # Spark runs several Python workers per node: OpenVINO pinning each one's threads
            # would put them all on the same first cores (measured: half the speed of two tasks)
            "ENABLE_CPU_PINNING": False,
        }
        if omp_threads():
            config["INFERENCE_NUM_THREADS"] = omp_threads()
        compiled = core.compile_model(graph, "CPU", config)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the ONNX model {spec.onnx_uri}: {exc}") from None
    return OpenVinoModel(
        spec=spec,
        labels=labels,
        batch_size=batch_size,
        image_size=image_size,
        compiled=compiled,
        outputs_probabilities=probabilities,
    )


#: runtime -> the function that binds a converted (ONNX) model for it
CONVERTED_BINDERS = {"onnxruntime": bind_onnx, "openvino": bind_openvino}


def bind_converted(
    spec: ModelSpec, model: bytes, labels: list[str], batch_size: int, image_size: int
) -> BoundModel:
    """The converted model ``model`` (ONNX bytes) bound by ``spec.runtime``."""
    return CONVERTED_BINDERS[spec.runtime](spec, model, labels, batch_size, image_size)
