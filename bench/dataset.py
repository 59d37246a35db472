"""Deterministic benchmark inputs: realistic JPEG photos and tiny PNGs.

The photos are crops of scikit-learn's two bundled sample photographs (``china.jpg``,
``flower.jpg``, 640x427) at random positions and scales, randomly flipped, with a little noise,
resized to about 500x375 and re-encoded as baseline JPEG at quality 75-95: the size (30-60 KB) and
content of ordinary camera pictures, no download needed. Equal arguments give equal bytes.
"""

from __future__ import annotations

import io
import random
from functools import cache

PHOTO_SIZE = (500, 375)


@cache
def _sample_photos() -> tuple:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    return tuple(Image.fromarray(array) for array in load_sample_images().images)


def photo_jpeg(index: int, seed: int = 0) -> bytes:
    """The ``index``-th benchmark photo: a ~500x375 baseline JPEG, identical for equal arguments."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed * 1_000_003 + index)
    source = rng.choice(_sample_photos())
    width, height = source.size
    scale = rng.uniform(0.6, 1.0)
    crop_w, crop_h = int(width * scale), int(height * scale)
    left, top = rng.randrange(width - crop_w + 1), rng.randrange(height - crop_h + 1)
    image = source.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = (PHOTO_SIZE[0] + rng.randrange(-20, 21), PHOTO_SIZE[1] + rng.randrange(-15, 16))
    image = image.resize(size, Image.Resampling.BILINEAR)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 4, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=rng.randrange(75, 96))
    return buffer.getvalue()


def tiny_png(index: int, size: int = 8) -> bytes:
    """A tiny solid-colour PNG, for the memory and listing benchmarks where pixels don't matter."""
    from PIL import Image

    buffer = io.BytesIO()
    colour = (index % 251, (index * 7) % 251, (index * 13) % 251)
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()
