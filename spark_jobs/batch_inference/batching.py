"""Fixed-size batches of keys and the top-k of a probability row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` items; the last one may be shorter. Each item appears once."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    iterator = iter(items)
    while True:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield chunk


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[dict]:
    """The ``k`` most probable classes of one row, best first, as contract ``top_k`` entries.

    Ties keep the lower class index first (stable sort), so the result is deterministic.
    """
    k = min(k, probabilities.shape[0])
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"label": labels[i], "index": int(i), "probability": float(probabilities[i])} for i in order
    ]
