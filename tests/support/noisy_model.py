"""A model that disagrees with the one it was made from: the same graph, noisy weights."""

from __future__ import annotations

import tempfile


def noisy_params(params: bytes, scale: float = 0.5, seed: int = 0) -> bytes:
    """An MXNet params file's bytes with Gaussian noise (``scale``) added to every weight."""
    import mxnet as mx
    import numpy as np

    rng = np.random.default_rng(seed)
    noisy = {
        name: mx.nd.array(value.asnumpy() + rng.normal(0, scale, value.shape).astype(np.float32))
        for name, value in mx.nd.load_frombuffer(params).items()
    }
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/noisy.params"
        mx.nd.save(path, noisy)
        with open(path, "rb") as handle:
            return handle.read()
