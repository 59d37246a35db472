"""Decoding, colour modes, orientation, JPEG draft, normalisation and bad-input classification."""

from __future__ import annotations

import io

import numpy as np
import pytest
from batch_inference.config import Preprocess
from batch_inference.errors import DECOMPRESSION_BOMB, ImageError
from batch_inference.images import decode_image, open_image, to_rgb
from PIL import Image

from include.demo.images import BAD_INPUTS, bad_input, decompression_bomb

IDENTITY = Preprocess(image_size=4, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixel(tensor: np.ndarray) -> tuple[float, float, float]:
    """The (uniform) colour of a CHW tensor."""
    assert np.allclose(tensor, tensor[:, :1, :1]), "expected a uniform image"
    return tuple(float(v) for v in tensor[:, 0, 0])


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        (Image.new("RGB", (6, 6), (10, 20, 30)), "PNG", (10, 20, 30)),
        (Image.new("L", (6, 6), 77), "PNG", (77, 77, 77)),
        (Image.new("1", (6, 6), 1), "PNG", (255, 255, 255)),
        (Image.new("LA", (6, 6), (0, 0)), "PNG", (255, 255, 255)),  # transparent -> white
        (Image.new("LA", (6, 6), (40, 255)), "PNG", (40, 40, 40)),  # opaque keeps its grey
        (Image.new("RGBA", (6, 6), (200, 0, 0, 0)), "PNG", (255, 255, 255)),
        (Image.new("RGBA", (6, 6), (200, 0, 0, 255)), "PNG", (200, 0, 0)),
        (Image.new("RGBA", (6, 6), (0, 0, 0, 128)), "PNG", (127, 127, 127)),  # half over white
        (Image.new("RGB", (6, 6), (0, 128, 255)).quantize(4), "PNG", (0, 128, 255)),
        (Image.new("CMYK", (6, 6), (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
        (Image.new("I;16", (6, 6), 65535), "PNG", (255, 255, 255)),  # scaled, not clipped
        (Image.new("I;16", (6, 6), 257 * 100), "PNG", (100, 100, 100)),
    ],
    ids=lambda value: value.mode if isinstance(value, Image.Image) else str(value),
)
def test_every_mode_becomes_rgb(image, fmt, expected):
    data = encode(image, fmt)
    assert Image.open(io.BytesIO(data)).mode == image.mode  # the file really has that mode
    assert pixel(decode_image(data, IDENTITY)) == pytest.approx(expected, abs=1)


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (6, 6), 0)
    image.putpalette([0, 0, 0] * 256)
    data = encode(image, "PNG", transparency=0)
    assert pixel(decode_image(data, IDENTITY)) == (255, 255, 255)


def test_output_is_nchw_float32_resized_and_normalised():
    spec = Preprocess(image_size=5, scale=1 / 255, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    data = encode(Image.new("RGB", (17, 9), (255, 0, 102)))
    tensor = decode_image(data, spec)
    assert tensor.shape == (3, 5, 5) and tensor.dtype == np.float32
    assert pixel(tensor) == pytest.approx((1.0, -1.0, 0.2), abs=1e-6)


def test_exif_orientation_is_applied():
    # A 2x1 image: left pixel red, right blue. EXIF orientation 6 = rotate 90 degrees clockwise.
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "PNG", exif=exif.tobytes())
    rgb = to_rgb(open_image(data, size=2))
    assert rgb.size == (1, 2)  # portrait after rotation
    assert rgb.getpixel((0, 0)) == (255, 0, 0) and rgb.getpixel((0, 1)) == (0, 0, 255)


def test_jpeg_is_decoded_in_draft_mode_near_the_target_size():
    data = encode(Image.new("RGB", (1024, 768), (90, 90, 90)), "JPEG", quality=90)
    image = open_image(data, size=100)
    image.load()
    assert image.size == (256, 192)  # DCT scaled by 1/4: the smallest scale >= 100 px
    png = open_image(encode(Image.new("RGB", (1024, 768))), size=100)
    assert png.size == (1024, 768)  # draft is a JPEG-only optimisation


@pytest.mark.parametrize("kind", sorted(kind for kind in BAD_INPUTS if kind != "missing"))
def test_bad_inputs_raise_their_contract_error_type(kind):
    body, expected = bad_input(kind)
    with pytest.raises(ImageError) as caught:
        decode_image(body, Preprocess(image_size=8))
    assert caught.value.error_type == expected
    assert caught.value.as_dict() == {"type": expected, "message": caught.value.message}


def test_images_above_the_pixel_limit_are_refused_before_decoding():
    data = encode(Image.new("L", (100, 100)))
    with pytest.raises(ImageError) as caught:
        decode_image(data, Preprocess(image_size=8), max_pixels=9_999)
    assert caught.value.error_type == DECOMPRESSION_BOMB
    assert "100x100" in caught.value.message
    with pytest.raises(ImageError) as caught:
        decode_image(decompression_bomb(), Preprocess(image_size=8))
    assert caught.value.error_type == DECOMPRESSION_BOMB


def test_truncated_image_data_is_reported_as_truncated():
    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(ImageError) as caught:
        decode_image(data[: len(data) * 2 // 3], Preprocess(image_size=8))
    assert caught.value.error_type == "truncated_image"
