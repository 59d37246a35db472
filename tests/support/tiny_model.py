"""A tiny MXNet classifier (flatten + one dense layer) built in memory for fast unit tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from batch_inference.config import ModelSpec


def tiny_model_files(
    classes: int = 4, image_size: int = 8, softmax_output: bool = False, seed: int = 0
) -> tuple[str, bytes, list[str], dict]:
    """``(symbol_json, params_bytes, labels, weights)``; ``weights`` has ``fc_weight``/``fc_bias``.

    With ``softmax_output`` the graph ends in ``SoftmaxOutput`` (probabilities, like classic
    Module-trained models); otherwise it ends in logits (like Gluon exports).
    """
    import mxnet as mx

    data = mx.sym.var("data")
    net = mx.sym.FullyConnected(mx.sym.flatten(data), num_hidden=classes, name="fc")
    if softmax_output:
        net = mx.sym.SoftmaxOutput(net, name="softmax")
    rng = np.random.default_rng(seed)
    weights = {
        "fc_weight": rng.normal(0, 0.05, (classes, 3 * image_size * image_size)).astype("float32"),
        "fc_bias": rng.normal(0, 0.1, (classes,)).astype("float32"),
    }
    params = {f"arg:{name}": mx.nd.array(value) for name, value in weights.items()}
    with tempfile.TemporaryDirectory() as tmp:  # mx.nd.save writes to a file name only
        path = Path(tmp) / "tiny.params"
        mx.nd.save(str(path), params)
        params_bytes = path.read_bytes()
    return net.tojson(), params_bytes, [f"class-{i}" for i in range(classes)], weights


def reference_logits(weights: dict, batch: np.ndarray) -> np.ndarray:
    """What the tiny model computes, in NumPy."""
    flat = batch.reshape(batch.shape[0], -1).astype(np.float64)
    return flat @ weights["fc_weight"].T.astype(np.float64) + weights["fc_bias"]


def upload_tiny_model(
    client, bucket: str, prefix: str, classes: int = 4, image_size: int = 8
) -> ModelSpec:
    """Write the tiny model's symbol, params and labels under ``prefix``; returns its spec."""
    symbol, params, labels, _ = tiny_model_files(classes=classes, image_size=image_size)
    uris = {}
    for part, name, body in (
        ("symbol", "symbol.json", symbol.encode()),
        ("params", "model.params", params),
        ("labels", "labels.txt", "\n".join(labels).encode()),
    ):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)
        uris[f"{part}_uri"] = f"s3://{bucket}/{prefix}/{name}"
    return ModelSpec(name="tiny", **uris)
