"""Benchmark 9b: cheaper image paths against the job's, judged by the agreement gate.

The job decodes with Pillow (JPEG draft at the smallest DCT scale that keeps both sides >= the
model's input, EXIF orientation, RGB, bilinear resize: :func:`batch_inference.images.decode_image`).
Each alternative here changes only decode and resize; the normalisation is the job's. Two figures
per alternative, in one run:

* **CPU ms per image** (``time.process_time``, one thread) over the benchmark photos (~500x375
  JPEGs, bench.dataset) to 224 px, against the job's path;
* **top-1 agreement with the job's path** on the demo digits CNN trained here (500 held-out digits
  rendered as 240-px JPEGs, decoded to its 32-px input): the agreement gate's measure, on a model
  whose answers mean something (never on random weights).

The OpenCV rows need ``opencv-python-headless`` importable (4.10 is the newest whose wheels take
this venv's numpy 1.23): it is not a dependency of this repository. Install it beside, e.g.
``.venv/bin/pip install --target /tmp/opencv opencv-python-headless==4.10.0.84 --no-deps``, then
``PYTHONPATH=/tmp/opencv .venv/bin/python -m bench.image_decoders``; without it those rows are
left out and said to be.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: JPEG bytes and a square side -> side x side x 3 uint8 RGB
Resize = Callable[[bytes, int], np.ndarray]
PHOTOS, DIGIT_SIDE, ROUNDS = 200, 240, 3


def pillow_job(data: bytes, side: int) -> np.ndarray:
    """The job's decode and resize (draft at the smallest DCT scale >= side, bilinear)."""
    from batch_inference.images import open_image, to_rgb
    from PIL import Image

    image = to_rgb(open_image(data, side))
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def pillow_draft_below(data: bytes, side: int) -> np.ndarray:
    """JPEG draft one DCT scale further than the job's (below ``side``), then bilinear up."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (side // 2, side // 2))
    return np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR))


def dct_scale(data: bytes, side: int) -> int:
    """The largest of 8, 4, 2, 1 that keeps both sides of the JPEG >= ``side`` (header only)."""
    from PIL import Image

    width, height = Image.open(io.BytesIO(data)).size
    return next(s for s in (8, 4, 2, 1) if min(-(-width // s), -(-height // s)) >= side)


def opencv(interpolation: str, reduced: bool) -> Resize:
    """OpenCV's decode (``reduced``: at the job's DCT scale, :func:`dct_scale`) and resize."""
    import cv2

    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2}
    flags |= {4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    method = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[interpolation]

    def resize(data: bytes, side: int) -> np.ndarray:
        scale = dct_scale(data, side) if reduced else 1
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags[scale])
        return cv2.cvtColor(cv2.resize(bgr, (side, side), interpolation=method), cv2.COLOR_BGR2RGB)

    return resize


def alternatives() -> dict[str, Resize]:
    """The job's path first, then every alternative importable here."""
    found: dict[str, Resize] = {
        "Pillow, the job's (draft >= input, bilinear)": pillow_job,
        "Pillow, draft one scale below the input, bilinear up": pillow_draft_below,
    }
    try:
        import cv2  # noqa: F401
    except ImportError:
        print("opencv-python-headless is not importable: its rows are left out (see --help)")
        return found
    for reduced in (False, True):
        for interpolation in ("bilinear", "area"):
            decode = "reduced decode at the job's scale" if reduced else "full decode"
            found[f"OpenCV, {decode}, {interpolation}"] = opencv(interpolation, reduced)
    return found


def cpu_ms(resize: Resize, images: list[bytes], side: int) -> float:
    """CPU milliseconds per image, the best of :data:`ROUNDS` passes."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for data in images:
            resize(data, side)
        best = min(best, time.process_time() - started)
    return best * 1000 / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-image-decoders"))
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(repo / "spark_jobs"), str(repo / "plugins")]
    from batch_inference.config import ModelSpec
    from batch_inference.images import affine
    from batch_inference.model import bind_model

    from bench.dataset import photo_jpeg
    from bench.int8 import cpu_description
    from emr_inference_tools.demo.images import TRAIN_COUNT, digit_bytes
    from emr_inference_tools.demo.models import train_digits_classifier

    photos = [photo_jpeg(index) for index in range(PHOTOS)]
    digits_model = train_digits_classifier(args.workdir / "digits")
    spec = digits_model.preprocess()
    digits = [digit_bytes(TRAIN_COUNT + i, "JPEG", DIGIT_SIDE) for i in range(500)]
    jpegs, labels = [data for data, _ in digits], np.asarray([label for _, label in digits])
    symbol, params = digits_model.symbol_path.read_text(), digits_model.params_path.read_bytes()
    model_spec = ModelSpec("digits", "", "", "")
    model = bind_model(model_spec, symbol, params, digits_model.labels(), 50, spec.image_size)
    gain, offset = affine(spec)

    def top1(resize: Resize) -> np.ndarray:
        pixels = np.stack([resize(data, spec.image_size) for data in jpegs])
        tensors = (pixels.transpose(0, 3, 1, 2) * gain + offset).astype(np.float32)
        return np.concatenate(
            [model.predict(tensors[i : i + 50]).argmax(1) for i in range(0, len(tensors), 50)]
        )

    found = alternatives()
    job = next(iter(found.values()))
    reference, job_ms = top1(job), cpu_ms(job, photos, 224)
    print(f"CPU: {cpu_description()}; {PHOTOS} photos to 224 px, {len(jpegs)} held-out digits as "
          f"{DIGIT_SIDE}-px JPEGs to {spec.image_size} px")  # fmt: skip
    print("| decode + resize | CPU ms per photo | vs the job's | digits top-1 agreement with the "
          "job's path | accuracy |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, resize in found.items():
        answers = reference if resize is job else top1(resize)
        ms = job_ms if resize is job else cpu_ms(resize, photos, 224)
        print(
            f"| {name} | {ms:.2f} | {job_ms / ms:.2f}x | {np.mean(answers == reference):.1%} | "
            f"{np.mean(answers == labels):.1%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
