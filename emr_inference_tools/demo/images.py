"""Demo and test images: scikit-learn's digits rendered as PNG/JPEG, and every kind of bad input.

Used by ``make demo``, the Spark job's tests, the Airflow tests and the benchmarks. Nothing is
downloaded: the digits ship with scikit-learn. The error types expected for each bad input are the
job's own (``batch_inference.errors``), so ``spark_jobs/`` is put on ``sys.path`` when missing.

Typical use::

    objects = demo_objects(500, bad_fraction=0.05)
    uris = upload_objects(s3_client, "bucket", "images/dt=2026-11-22/", objects)
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SPARK_JOBS = Path(__file__).resolve().parents[2] / "spark_jobs"
if str(SPARK_JOBS) not in sys.path:
    sys.path.append(str(SPARK_JOBS))

from batch_inference import errors  # noqa: E402

DIGIT_IMAGE_SIZE = 32
# The first TRAIN_COUNT digits train the demo classifier; the rest (500) are held out.
TRAIN_COUNT = 1297


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (values 0-16) and their labels 0-9."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    return data.images, data.target


def render_digit(pixels: np.ndarray, size: int = DIGIT_IMAGE_SIZE) -> Image.Image:
    """An 8x8 digit (0-16) as a ``size``-pixel RGB image: dark ink on white paper."""
    grey = (255 - np.clip(pixels, 0, 16) * (255 / 16)).astype(np.uint8)
    return (
        Image.fromarray(grey, mode="L")
        .resize((size, size), Image.Resampling.BILINEAR)
        .convert("RGB")
    )


def encode(image: Image.Image, fmt: str) -> bytes:
    """``image`` as ``PNG`` or ``JPEG`` (quality 90) bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt.upper() == "JPEG" else {}))
    return buffer.getvalue()


def digit_bytes(index: int, fmt: str, size: int = DIGIT_IMAGE_SIZE) -> tuple[bytes, int]:
    """Digit number ``index`` of the dataset encoded as ``fmt``, and its label."""
    images, labels = load_digits()
    return encode(render_digit(images[index], size), fmt), int(labels[index])


# --- bad inputs ---------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def decompression_bomb(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (400 megapixels by default)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A PNG with an intact header and a destroyed compressed data stream."""
    data = bytearray(digit_bytes(0, "PNG")[0])
    start = data.index(b"IDAT") + 4
    data[start : start + 32] = b"\x00" * 32
    return bytes(data)


def truncated_jpeg() -> bytes:
    """The first half of a valid JPEG."""
    data = digit_bytes(1, "JPEG")[0]
    return data[: len(data) // 2]


def unsupported_mode_tiff() -> bytes:
    """A valid TIFF in 32-bit float mode (``F``), which the job does not classify."""
    buffer = io.BytesIO()
    Image.new("F", (16, 16), 0.5).save(buffer, "TIFF")
    return buffer.getvalue()


# kind -> (body, or None for "no object at this key"; error type the job must report)
BAD_INPUTS = {
    "corrupt": (corrupt_png, errors.CORRUPT_IMAGE),
    "truncated": (truncated_jpeg, errors.TRUNCATED_IMAGE),
    "empty": (lambda: b"", errors.EMPTY_OBJECT),
    "non_image": (lambda: b"this is a text file, not an image\n", errors.UNSUPPORTED_IMAGE),
    "unsupported_mode": (unsupported_mode_tiff, errors.UNSUPPORTED_IMAGE),
    "decompression_bomb": (decompression_bomb, errors.DECOMPRESSION_BOMB),
    "missing": (lambda: None, errors.MISSING_OBJECT),
}


def bad_input(kind: str) -> tuple[bytes | None, str]:
    """The body of a bad input of ``kind`` (``None``: do not upload) and its expected error type."""
    try:
        make, error_type = BAD_INPUTS[kind]
    except KeyError:
        raise ValueError(f"unknown bad input kind {kind!r}; one of {sorted(BAD_INPUTS)}") from None
    return make(), error_type


# --- data sets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoObject:
    """One object of a demo data set: its key name, body and what the job should say about it."""

    name: str
    body: bytes | None  # None: listed in the manifest but never uploaded (missing object)
    label: int | None  # the digit, for good images
    expected_error: str | None  # the error type, for bad inputs


def demo_objects(
    count: int, bad_fraction: float = 0.05, size: int = DIGIT_IMAGE_SIZE
) -> list[DemoObject]:
    """``count`` held-out digits alternating PNG and JPEG, ``bad_fraction`` of them bad inputs.

    Deterministic: bad inputs are spread evenly and cycle through every kind of ``BAD_INPUTS``.
    """
    images, labels = load_digits()
    held_out = len(images) - TRAIN_COUNT
    bad_positions = _spread(count, round(count * bad_fraction))
    kinds = sorted(BAD_INPUTS)
    objects = []
    for i in range(count):
        if i in bad_positions:
            kind = kinds[len([p for p in bad_positions if p < i]) % len(kinds)]
            body, error_type = bad_input(kind)
            suffix = "jpg" if kind == "truncated" else "png"  # listed by stage_manifest's filter
            objects.append(DemoObject(f"bad-{i:05d}-{kind}.{suffix}", body, None, error_type))
            continue
        fmt = "PNG" if i % 2 == 0 else "JPEG"
        index = TRAIN_COUNT + i % held_out
        body = encode(render_digit(images[index], size), fmt)
        suffix = "png" if fmt == "PNG" else "jpg"
        objects.append(DemoObject(f"digit-{i:05d}.{suffix}", body, int(labels[index]), None))
    return objects


def _spread(count: int, picks: int) -> set[int]:
    """``picks`` positions spread evenly over ``range(count)``."""
    if picks <= 0:
        return set()
    step = count / picks
    return {int(step * j + step / 2) for j in range(picks)}


def upload_objects(
    client, bucket: str, prefix: str, objects: list[DemoObject], workers: int = 8
) -> list[str]:
    """Upload ``objects`` under ``prefix`` (``workers`` PutObjects at a time); returns every
    object's ``s3://`` URI in order (missing objects included, so a manifest can list them)."""
    keys = [f"{prefix.rstrip('/')}/{obj.name}" if prefix else obj.name for obj in objects]

    def put(key: str, obj: DemoObject) -> None:
        if obj.body is not None:
            client.put_object(Bucket=bucket, Key=key, Body=obj.body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, keys, objects))  # list(): re-raise the first failed upload
    return [f"s3://{bucket}/{key}" for key in keys]
