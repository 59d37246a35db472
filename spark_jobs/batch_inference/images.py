"""Image bytes to a normalised ``(3, size, size)`` float32 tensor, with typed errors.

Decoding uses Pillow: JPEG draft mode (the decoder scales by 1/2, 1/4 or 1/8 in the DCT, so large
photos decode several times faster), EXIF orientation, every common mode to RGB (transparent ones
composited on white, 16-bit greyscale scaled rather than clipped), a bilinear resize to a square and
``(pixel * scale - mean) / std`` per channel, computed as one multiply-add per value (``pixel *
gain + offset``, within 1e-6 of the formula: see :func:`affine`) straight into the caller's slot of
a batch array when it passes one. Anything that goes wrong raises
:class:`~batch_inference.errors.ImageError` with one of the contract's error types.
"""

from __future__ import annotations

import io
import warnings
from functools import cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from batch_inference.config import Preprocess
from batch_inference.errors import (
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    EMPTY_OBJECT,
    TRUNCATED_IMAGE,
    UNSUPPORTED_IMAGE,
    ImageError,
)

# Pillow's own bomb limit (about 89 megapixels); an image above it is refused before decoding.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

# The explicit check below replaces Pillow's warning (warnings.catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_WHITE = (255, 255, 255)
# Modes Pillow converts to RGB correctly with a plain convert("RGB").
_DIRECT_TO_RGB = {"1", "L", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_WITH_ALPHA = {"LA", "La", "RGBA", "RGBa", "PA"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# Leading bytes of the formats we expect: such a file that Pillow cannot identify is corrupt, not
# an unsupported format.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def open_image(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``data`` lazily, refuse bombs and ask the JPEG decoder for a draft near ``size``."""
    if not data:
        raise ImageError(EMPTY_OBJECT, "object is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(DECOMPRESSION_BOMB, str(exc)) from None
    except UnidentifiedImageError:
        if data.startswith(_IMAGE_SIGNATURES):
            raise ImageError(CORRUPT_IMAGE, "image header is damaged") from None
        raise ImageError(UNSUPPORTED_IMAGE, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise classify_decode_error(exc, "cannot read image header: ") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            DECOMPRESSION_BOMB,
            f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}",
        )
    # JPEG only (a no-op for other formats): decode at the smallest DCT scale >= size.
    image.draft("RGB", (size, size))
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Decode and convert any supported mode to 8-bit RGB, applying the EXIF orientation."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
        mode = image.mode
        if mode == "RGB":
            return image
        if mode == "P":
            mode = "PA" if "transparency" in image.info else "RGB"
            image = image.convert("RGBA" if mode == "PA" else "RGB")
        if mode in _WITH_ALPHA:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, _WHITE + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if mode in _DIRECT_TO_RGB:
            return image.convert("RGB")
        if mode in _SIXTEEN_BIT:
            pixels = np.asarray(image, dtype=np.float64)
            grey = np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8)
            return Image.fromarray(grey, mode="L").convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(DECOMPRESSION_BOMB, str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise classify_decode_error(exc) from None
    raise ImageError(UNSUPPORTED_IMAGE, f"image mode {mode!r} is not supported")


def classify_decode_error(exc: BaseException, context: str = "") -> ImageError:
    """Map a Pillow decoding exception to ``truncated_image`` or ``corrupt_image``."""
    message = context + (str(exc) or type(exc).__name__)
    if isinstance(exc, EOFError) or "truncated" in message.lower():
        return ImageError(TRUNCATED_IMAGE, message)
    return ImageError(CORRUPT_IMAGE, message)


@cache
def affine(spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(gain, offset)``, float32 of shape ``(3, 1, 1)``, with ``pixel * gain + offset
    == (pixel * scale - mean) / std`` up to float32 rounding (at most 1e-6 apart for the ImageNet
    defaults over every pixel value, tested exhaustively)."""
    std = np.asarray(spec.std, dtype=np.float64)
    gain = np.float64(spec.scale) / std
    offset = -np.asarray(spec.mean, dtype=np.float64) / std
    return gain.astype(np.float32).reshape(3, 1, 1), offset.astype(np.float32).reshape(3, 1, 1)


def to_tensor(image: Image.Image, spec: Preprocess, out: np.ndarray | None = None) -> np.ndarray:
    """Resize an RGB image to ``spec.image_size`` and normalise it to a CHW float32 array.

    With ``out`` (a ``(3, size, size)`` float32 array, e.g. one slot of a batch) the result is
    written there and ``out`` returned: no other float array is made.
    """
    size = spec.image_size
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    if out is None:
        out = np.empty((3, size, size), dtype=np.float32)
    gain, offset = affine(spec)
    np.multiply(np.asarray(image).transpose(2, 0, 1), gain, out=out)
    out += offset
    return out


def decode_image(
    data: bytes, spec: Preprocess, max_pixels: int = MAX_PIXELS, out: np.ndarray | None = None
) -> np.ndarray:
    """The whole pipeline: bytes to a ``(3, size, size)`` float32 tensor (in ``out`` if given) or
    an ``ImageError``."""
    image = open_image(data, spec.image_size, max_pixels)
    try:
        return to_tensor(to_rgb(image), spec, out)
    finally:
        image.close()
