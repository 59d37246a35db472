"""Top-1 agreement between two bound models on a run's own images: the gate of every model the
job derives from the one a pipeline names (the int8 model of :mod:`batch_inference.quantize`, the
converted model of :mod:`batch_inference.convert`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from batch_inference.config import JobConfig
from batch_inference.errors import JobFailed
from batch_inference.manifest import Manifest, iter_keys
from batch_inference.runtime import BoundModel


def decode_sample(client, keys: Iterable[str], config: JobConfig, what: str) -> np.ndarray:
    """The images at ``keys`` decoded as the job decodes them; bad ones are skipped (``what``
    names the gate in the error when none decodes)."""
    from batch_inference.partition import prepare

    tensors = [prepare(client, key, config.preprocess).tensor for key in keys]
    good = [tensor for tensor in tensors if tensor is not None]
    if not good:
        raise JobFailed(f"{what}: none of the sample images could be decoded")
    return np.stack(good)


def middle_keys(client, manifest: Manifest, count: int) -> list[str]:
    """``count`` keys of this run (all when it has fewer), from the middle of its manifest."""
    count = min(count, manifest.total)
    start = (manifest.total - count) // 2
    return list(iter_keys(client, manifest, start, start + count))


def top1_agreement(reference: BoundModel, candidate: BoundModel, tensors: np.ndarray) -> float:
    """Share of images whose top-1 class is the same in both models."""
    same = 0
    for start in range(0, len(tensors), reference.batch_size):
        batch = tensors[start : start + reference.batch_size]
        expected, got = reference.predict(batch).argmax(1), candidate.predict(batch).argmax(1)
        same += int((expected == got).sum())
    return same / len(tensors)
