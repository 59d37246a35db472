"""The image path stage by stage: S3 GET, decode, to RGB, resize, normalise, copy into the input.

Benchmark 8 measures the CPU time (``time.thread_time``: this thread only, so neither the S3
emulator's process nor other engineers' processes count) of each stage for the same photos, batch
by batch, two ways in the same run:

* **before**: the job's path until issue #12 (``exif_transpose`` and ``convert("RGB")`` each
  copying the decoded image, ``(pixel * scale - mean) / std`` in three float32 passes plus a
  transpose copy, ``np.stack`` of the batch), kept here as the reference;
* **now**: the job's own functions (:mod:`batch_inference.images`): an upright RGB image is used
  as decoded, one multiply-add per value written straight into the image's slot of a batch array,
  and that array goes to the model as it is.

Both end with the copy into an MXNet input array of the bound batch shape (what
:meth:`batch_inference.model.LoadedModel.predict` does). It also measures one alternative the job
does not take, JPEG draft mode down to half the target size, and how far its pixels move.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

STAGES = ("get", "decode", "to_rgb", "resize", "normalise", "batch", "copy_in")


@dataclass
class StageTimes:
    """CPU seconds per stage, summed over ``images``."""

    images: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def per_image_ms(self) -> dict[str, float]:
        """CPU milliseconds per image for each stage, and ``total``."""
        ms = {stage: 1000 * value / max(self.images, 1) for stage, value in self.seconds.items()}
        return {**ms, "total": sum(ms.values())}


class _Clock:
    """Adds the thread CPU time since the last call to a stage."""

    def __init__(self, times: StageTimes) -> None:
        self.times, self.last = times, time.thread_time()

    def lap(self, stage: str) -> None:
        now = time.thread_time()
        self.times.seconds[stage] += now - self.last
        self.last = now


def _previous_normalise(image, spec) -> np.ndarray:
    """The job's normalisation before issue #12: three float32 passes and a transpose copy."""
    hwc = np.asarray(image, dtype=np.float32) * np.float32(spec.scale)
    hwc = (hwc - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def before_batch(bodies: list[bytes], spec, data, times: StageTimes) -> None:
    """One batch through the previous path into ``data`` (an MXNet input array)."""
    from batch_inference.images import open_image
    from PIL import Image, ImageOps

    clock, size, tensors = _Clock(times), spec.image_size, []
    for body in bodies:
        image = open_image(body, size)
        image.load()
        clock.lap("decode")
        rgb = ImageOps.exif_transpose(image).convert("RGB")
        clock.lap("to_rgb")
        resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
        clock.lap("resize")
        tensors.append(_previous_normalise(resized, spec))
        clock.lap("normalise")
    batch = np.stack(tensors)
    clock.lap("batch")
    data[: len(bodies)] = batch
    clock.lap("copy_in")
    times.images += len(bodies)


def now_batch(bodies: list[bytes], spec, data, inputs: np.ndarray, times: StageTimes) -> None:
    """One batch through the job's functions: decoded into ``inputs``' slots, then ``data``."""
    from batch_inference.images import open_image, to_rgb, to_tensor
    from PIL import Image

    clock, size = _Clock(times), spec.image_size
    for slot, body in enumerate(bodies):
        image = open_image(body, size)
        image.load()
        clock.lap("decode")
        rgb = to_rgb(image)
        clock.lap("to_rgb")
        resized = (
            rgb.resize((size, size), Image.Resampling.BILINEAR) if rgb.size != (size, size) else rgb
        )
        clock.lap("resize")
        to_tensor(resized, spec, out=inputs[slot])
        clock.lap("normalise")
    data[: len(bodies)] = inputs[: len(bodies)]
    clock.lap("copy_in")
    times.images += len(bodies)


def timed_gets(get: Callable[[str], bytes], keys: list[str], times: StageTimes) -> list[bytes]:
    """The bodies of ``keys`` by ``get`` (a boto3 GET and read), its CPU time in ``get``."""
    clock, bodies = _Clock(times), []
    for key in keys:
        bodies.append(get(key))
        clock.lap("get")
    return bodies


def draft_half(bodies: list[bytes], spec) -> dict[str, float]:
    """JPEG draft down to half the target, then the same resize: CPU ms per image of decode +
    resize, and the largest / mean absolute difference from the exact path in 0-255 pixels."""
    import io

    from batch_inference.images import open_image
    from PIL import Image

    size, worst, mean_diffs, spent = spec.image_size, 0.0, list[float](), 0.0
    for body in bodies:
        started = time.thread_time()
        image = Image.open(io.BytesIO(body))
        image.draft("RGB", (size // 2, size // 2))
        fast = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        spent += time.thread_time() - started
        exact = (
            open_image(body, size).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        )
        diff = np.abs(np.asarray(fast, np.int16) - np.asarray(exact, np.int16))
        worst, mean_diffs = max(worst, float(diff.max())), [*mean_diffs, float(diff.mean())]
    return {
        "ms": 1000 * spent / len(bodies),
        "max_abs": worst,
        "mean_abs": float(np.mean(mean_diffs)),
    }


def measure(
    get: Callable[[str], bytes], keys: list[str], spec, batch_size: int
) -> tuple[StageTimes, StageTimes, dict[str, float]]:
    """Both paths over ``keys`` (the batches alternate between them), and :func:`draft_half`."""
    import mxnet as mx

    size = spec.image_size
    data = mx.nd.zeros((batch_size, 3, size, size), dtype="float32")
    inputs = np.empty((batch_size, 3, size, size), dtype=np.float32)
    before, now = StageTimes(), StageTimes()
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        bodies = timed_gets(get, chunk, now)
        before.seconds["get"] = now.seconds["get"]  # the GET is the same code both ways
        before_batch(bodies, spec, data, before)
        now_batch(bodies, spec, data, inputs, now)
    data.wait_to_read()
    return before, now, draft_half(bodies, spec)
