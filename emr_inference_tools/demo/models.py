"""Small real MXNet models for the demo, the tests and the benchmarks (nothing is downloaded).

* :func:`train_digits_classifier`: a small CNN trained in seconds on scikit-learn's digits,
  rendered as RGB images (:mod:`emr_inference_tools.demo.images`) and preprocessed by the job's own
  code
  (``batch_inference.images``), so the Spark job's predictions equal an in-process forward.
* :func:`export_resnet18`: Gluon's ResNet-18 v1 with seeded random weights, for parity and
  throughput checks at realistic cost.

Both export the job's three files (symbol JSON, params, labels). :func:`upload_model` stages them in
S3 and returns the ``model`` dict of the resolved request (docs/CONTRACTS.md);
``emr_inference.job_command.model_arguments`` turns that dict into the job's command-line arguments.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emr_inference_tools.demo.images import (
    DIGIT_IMAGE_SIZE,
    TRAIN_COUNT,
    encode,
    load_digits,
    render_digit,
)

# mxnet is imported inside the functions: importing this module stays cheap.


@dataclass(frozen=True)
class ExportedModel:
    """A model exported to local files, with the preprocessing it expects."""

    name: str
    symbol_path: Path
    params_path: Path
    labels_path: Path
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0 / 255.0
    input_name: str = "data"

    def preprocess(self):
        """The job's ``Preprocess`` for this model."""
        from batch_inference.config import Preprocess

        return Preprocess(
            image_size=self.image_size, scale=self.scale, mean=self.mean, std=self.std
        )

    def labels(self) -> list[str]:
        """The class labels, in output order."""
        return self.labels_path.read_text(encoding="utf-8").splitlines()


def _export(net, out_dir: Path, name: str, labels: list[str], **preprocess) -> ExportedModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / name
    net.export(str(prefix), epoch=0)
    labels_path = out_dir / f"{name}-labels.txt"
    labels_path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return ExportedModel(
        name=name,
        symbol_path=Path(f"{prefix}-symbol.json"),
        params_path=Path(f"{prefix}-0000.params"),
        labels_path=labels_path,
        **preprocess,
    )


def digits_tensors(indices: range, preprocess, formats: tuple[str, ...] = ("PNG", "JPEG")):
    """The digits at ``indices``, rendered, encoded in each format and decoded by the job's code.

    Returns ``(tensors (n, 3, S, S) float32, labels (n,) int)``.
    """
    from batch_inference.images import decode_image

    images, targets = load_digits()
    tensors, labels = [], []
    for fmt in formats:
        for i in indices:
            data = encode(render_digit(images[i], preprocess.image_size), fmt)
            tensors.append(decode_image(data, preprocess))
            labels.append(int(targets[i]))
    return np.stack(tensors), np.asarray(labels)


def train_digits_classifier(
    out_dir: str | Path,
    image_size: int = DIGIT_IMAGE_SIZE,
    epochs: int = 8,
    seed: int = 0,
    name: str = "digits-cnn",
) -> ExportedModel:
    """Train a small CNN on the first ``TRAIN_COUNT`` digits (PNG and JPEG renderings) and export.

    Takes a few seconds on two cores; held-out accuracy is typically above 95%.
    """
    import mxnet as mx
    from mxnet import autograd, gluon
    from mxnet.gluon import nn

    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    spec: dict[str, Any] = dict(image_size=image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    preprocess = ExportedModel("", Path(), Path(), Path(), **spec).preprocess()
    x, y = digits_tensors(range(TRAIN_COUNT), preprocess)

    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(16, kernel_size=3, padding=1, activation="relu"),
        nn.MaxPool2D(2),
        nn.Conv2D(32, kernel_size=3, padding=1, activation="relu"),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(64, activation="relu"),
        nn.Dense(10),
    )
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 2e-3})
    batch = 64
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            data, label = mx.nd.array(x[idx]), mx.nd.array(y[idx])
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(len(idx))
    return _export(net, Path(out_dir), name, [str(d) for d in range(10)], **spec)


def export_resnet18(
    out_dir: str | Path,
    classes: int = 1000,
    image_size: int = 224,
    seed: int = 0,
    name: str = "resnet18-random",
) -> ExportedModel:
    """Export Gluon's ResNet-18 v1 with seeded random weights (no pretrained download).

    The last layer is rescaled so the logits have a standard deviation of about 2 on random input:
    the probabilities are spread out (a meaningful parity check), not one-hot.
    """
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(seed)
    net = vision.resnet18_v1(pretrained=False, classes=classes)
    net.initialize(mx.init.Xavier(magnitude=2), ctx=mx.cpu())
    net.hybridize()
    probe = mx.nd.random.normal(shape=(4, 3, image_size, image_size))
    spread = float(net(probe).asnumpy().std()) or 1.0
    for param in net.output.collect_params().values():
        param.set_data(param.data() * (2.0 / spread))
    net(probe)  # trace the graph once more for export
    labels = [f"class_{i:04d}" for i in range(classes)]
    return _export(
        net,
        Path(out_dir),
        name,
        labels,
        image_size=image_size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )


def load_exported(model: ExportedModel):
    """The exported files as a Gluon ``SymbolBlock`` for in-process forwards."""
    import mxnet as mx
    from mxnet import gluon

    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.simplefilter("ignore", UserWarning)
        return gluon.SymbolBlock.imports(
            str(model.symbol_path), [model.input_name], str(model.params_path), ctx=mx.cpu()
        )


def predict_probabilities(net, tensors: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities ``(n, classes)`` of an in-process forward, float64."""
    import mxnet as mx

    outputs = [
        mx.nd.softmax(net(mx.nd.array(tensors[i : i + batch_size]))).asnumpy()
        for i in range(0, len(tensors), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float64)


def upload_model(client, model: ExportedModel, bucket: str, prefix: str) -> dict:
    """Upload the three files under ``s3://bucket/prefix/``; returns the request's ``model`` dict
    (URIs, sha256 digests and preprocessing)."""
    from batch_inference.model import sha256_hex  # the digest the job verifies

    uris = {}
    for part, path in (
        ("symbol", model.symbol_path),
        ("params", model.params_path),
        ("labels", model.labels_path),
    ):
        key = f"{prefix.strip('/')}/{path.name}"
        client.upload_file(str(path), bucket, key)
        uris[part] = f"s3://{bucket}/{key}"
    return {
        "name": model.name,
        **uris,
        "symbol_sha256": sha256_hex(model.symbol_path.read_bytes()),
        "params_sha256": sha256_hex(model.params_path.read_bytes()),
        "labels_sha256": sha256_hex(model.labels_path.read_bytes()),
        "input_name": model.input_name,
        "image_size": model.image_size,
        "mean": list(model.mean),
        "std": list(model.std),
        "scale": model.scale,
    }
