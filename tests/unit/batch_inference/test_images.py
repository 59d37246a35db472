"""Decoding, colour modes, orientation, JPEG draft, normalisation and bad-input classification."""

from __future__ import annotations

import io

import numpy as np
import pytest
from batch_inference.config import Preprocess
from batch_inference.errors import DECOMPRESSION_BOMB, ImageError
from batch_inference.images import decode_image, open_image, to_rgb, to_tensor
from PIL import Image

from emr_inference_tools.demo.images import BAD_INPUTS, bad_input, decompression_bomb

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


def gradient_image(width: int, height: int) -> Image.Image:
    """A non-uniform RGB image: red grows left to right, green top to bottom, blue is a checker."""
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel(
                (x, y),
                (255 * x // (width - 1), 255 * y // (height - 1), 200 if (x + y) % 2 else 30),
            )
    return image


def reference_chw(image: Image.Image, spec: Preprocess) -> list[list[list[float]]]:
    """``out[c][y][x] = (pixel(x, y)[c] * scale - mean[c]) / std[c]`` pixel by pixel, after the
    bilinear resize to a square: no numpy layout, so it cannot share a transposition bug."""
    size = spec.image_size
    resized = image.resize((size, size), Image.BILINEAR) if image.size != (size, size) else image
    return [
        [
            [
                (resized.getpixel((x, y))[c] * spec.scale - spec.mean[c]) / spec.std[c]
                for x in range(size)
            ]
            for y in range(size)
        ]
        for c in range(3)
    ]


@pytest.mark.parametrize("size", [(7, 4), (5, 5)], ids=["non-square, resized", "square"])
def test_to_tensor_is_channel_row_column(size):
    spec = Preprocess(image_size=5, scale=1 / 255, mean=(0.5, 0.25, 0.1), std=(0.5, 0.25, 2.0))
    image = gradient_image(*size)
    expected = np.array(reference_chw(image, spec), dtype=np.float32)
    np.testing.assert_allclose(to_tensor(image, spec), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(decode_image(encode(image), spec), expected, rtol=0, atol=1e-5)


def test_columns_stay_columns_and_rows_stay_rows():
    # Left half red, right half blue, on a wide image: in CHW, red is high in every row's first
    # column and low in its last; a CWH tensor would have red changing down each column instead.
    image = Image.new("RGB", (16, 6), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 8, 6))
    tensor = decode_image(encode(image), Preprocess(image_size=4, scale=1.0, mean=(0, 0, 0)))
    red, blue = tensor[0], tensor[2]
    assert (red[:, 0] > red[:, -1]).all() and (blue[:, 0] < blue[:, -1]).all()
    assert np.allclose(red, red[:1, :])  # every row alike: nothing varies from top to bottom


@pytest.mark.parametrize("level", [0, 1, 100, 128, 200, 254, 255])
def test_sixteen_bit_grey_maps_exactly_onto_eight_bits(level):
    # 257 * level is the 16-bit value of the 8-bit level (0xFFFF = 257 * 0xFF): no rounding slack.
    data = encode(Image.new("I;16", (6, 6), 257 * level))
    assert pixel(decode_image(data, IDENTITY)) == (level, level, level)


def test_the_pixel_limit_is_inclusive():
    data = encode(Image.new("L", (100, 100)))
    assert decode_image(data, Preprocess(image_size=8), max_pixels=10_000).shape == (3, 8, 8)
    with pytest.raises(ImageError, match="above the limit of 9999"):
        decode_image(data, Preprocess(image_size=8), max_pixels=9_999)


def test_32_bit_grey_above_the_16_bit_range_saturates_at_white():
    data = encode(Image.new("I", (6, 6), 100_000), "TIFF")
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == 100_000  # really beyond 16 bits
    assert pixel(decode_image(data, IDENTITY)) == (255, 255, 255)  # clipped, not wrapped


def test_error_messages_say_what_is_wrong():
    spec = Preprocess(image_size=8)
    cases = [
        (b"", "object is empty (0 bytes)"),
        (b"plain text, not an image", "not a recognised image format"),
        (
            encode(Image.new("L", (100, 50))),
            "image is 100x50 = 5000 pixels, above the limit of 4999",
        ),
    ]
    for data, message in cases:
        with pytest.raises(ImageError) as caught:
            decode_image(data, spec, max_pixels=4_999)
        assert caught.value.message == message
    with pytest.raises(ImageError) as caught:
        decode_image(decompression_bomb(), spec)
    assert "decompression bomb" in caught.value.message.lower()


def test_palette_transparency_is_by_index_not_by_colour():
    # Two palette entries with the same colour, only entry 0 transparent: only its pixels turn
    # white. (Through RGB, transparency becomes a colour key and would take both.)
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0] * 256)
    image.paste(1, (2, 0, 4, 2))  # right half: entry 1, opaque black
    tensor = decode_image(encode(image, "PNG", transparency=0), IDENTITY)
    assert tensor[:, :, :2].min() == 255 and tensor[:, :, 2:].max() == 0


def test_negative_32_bit_grey_saturates_at_black_and_truncation_is_named():
    data = encode(Image.new("I", (6, 6), -5_000), "TIFF")
    assert pixel(decode_image(data, IDENTITY)) == (0, 0, 0)  # clipped, not wrapped
    jpeg = encode(Image.effect_noise((64, 64), 64).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(ImageError) as caught:
        decode_image(jpeg[: len(jpeg) // 2], Preprocess(image_size=8))
    assert "truncated" in caught.value.message.lower()


def test_a_damaged_header_and_an_unsupported_mode_are_named():
    with pytest.raises(ImageError) as caught:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, IDENTITY)  # PNG signature, no image
    assert (caught.value.error_type, caught.value.message) == (
        "corrupt_image",
        "image header is damaged",
    )
    with pytest.raises(ImageError) as caught:
        decode_image(encode(Image.new("F", (6, 6), 0.5), "TIFF"), IDENTITY)
    assert (caught.value.error_type, caught.value.message) == (
        "unsupported_image",
        "image mode 'F' is not supported",
    )


@pytest.mark.parametrize(
    "spec",
    [Preprocess(), Preprocess(scale=1.0, mean=(123.68, 116.28, 103.53), std=(58.4, 57.1, 57.4))],
    ids=["imagenet, 1/255", "0-255 scale"],
)
def test_the_fused_normalisation_is_within_1e6_of_the_formula_for_every_pixel_value(spec):
    # The output depends on each pixel's value and channel only, so 256 values per channel are
    # every case: (pixel * scale - mean) / std computed in float32 as the job did before.
    values = np.arange(256, dtype=np.uint8)
    image = Image.fromarray(np.stack([values.reshape(16, 16)] * 3, axis=-1), "RGB")
    spec = Preprocess(image_size=16, scale=spec.scale, mean=spec.mean, std=spec.std)
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    formula = (pixels * np.float32(spec.scale) - mean) / std
    fused = to_tensor(image, spec)
    assert fused.dtype == np.float32 and fused.shape == (3, 16, 16)
    # a few float32 ulps of values within +-3: rounding, not a different input
    assert np.abs(fused - formula).max() <= 1e-6


def test_decoding_into_a_slot_of_a_batch_writes_there_and_nowhere_else():
    spec = Preprocess(image_size=5)
    batch = np.full((3, 3, 5, 5), -7.0, dtype=np.float32)
    image = gradient_image(9, 6)
    result = decode_image(encode(image), spec, out=batch[1])
    assert np.shares_memory(result, batch[1])
    np.testing.assert_array_equal(batch[1], decode_image(encode(image), spec))
    assert (batch[0] == -7).all() and (batch[2] == -7).all()


def test_an_rgb_image_without_orientation_is_not_copied():
    image = Image.open(io.BytesIO(encode(gradient_image(6, 4), "JPEG")))
    assert to_rgb(image) is image  # decoded in place: no transposed or converted copy
