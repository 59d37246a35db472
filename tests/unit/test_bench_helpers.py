"""Benchmark helpers: deterministic inputs, the blog's batching, driver process selection."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from bench.blog_flow import load_images, pad_keys
from bench.dataset import photo_jpeg, tiny_png
from bench.preloaded_s3 import Dataset
from bench.spark_run import driver_processes, driver_rss, driver_rss_parts


def test_photos_are_deterministic_camera_sized_jpegs() -> None:
    first, again, other = photo_jpeg(7), photo_jpeg(7), photo_jpeg(8)
    assert first == again
    assert first != other
    image = Image.open(io.BytesIO(first))
    assert image.format == "JPEG"
    width, height = image.size
    assert 480 <= width <= 520 and 360 <= height <= 390
    assert 15_000 < len(first) < 120_000  # a real photo's size, not a flat colour


def test_tiny_png_is_a_small_png() -> None:
    image = Image.open(io.BytesIO(tiny_png(3)))
    assert (image.format, image.size) == ("PNG", (8, 8))


def test_dataset_spec_round_trips_and_names_keys() -> None:
    dataset = Dataset.parse("photo:photos:images/:2000")
    assert dataset == Dataset("photo", "photos", "images/", 2000)
    assert Dataset.parse(str(dataset)) == dataset
    assert dataset.key(12) == "images/00000012.jpg"
    assert dataset.uri == "s3://photos/images/"


@pytest.mark.parametrize(
    ("text", "match"),
    [("photo:b:p", "kind:bucket:prefix:count"), ("gif:b:p:1", "kind must be one of")],
)
def test_dataset_spec_errors_name_the_problem(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Dataset.parse(text)


def test_blog_padding_repeats_first_keys_to_whole_batches() -> None:
    keys = [f"k{i}" for i in range(130)]
    padded, batch = pad_keys(keys, 64)
    assert batch == 64
    assert len(padded) == 192
    assert padded[130:] == keys[:62]
    assert pad_keys(keys[:10], 64) == (keys[:10], 10)  # fewer keys than a batch


def test_blog_decodes_a_partition_into_one_uint8_nchw_array() -> None:
    batch = load_images([photo_jpeg(0), photo_jpeg(1)])
    assert batch.shape == (2, 3, 224, 224)
    assert batch.dtype == np.uint8


def test_driver_processes_leave_out_the_python_worker_daemon() -> None:
    # A stand-in for the driver JVM: one ordinary child and one whose command line says
    # pyspark.daemon, like the parent of Spark's Python workers.
    script = (
        "import subprocess, sys, time\n"
        "sleep = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "children = [subprocess.Popen(sleep + ['driver']),\n"
        "            subprocess.Popen(sleep + ['-m', 'pyspark.daemon'])]\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", script])
    try:
        parent = psutil.Process(root.pid)
        deadline = time.monotonic() + 20
        while len(parent.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        selected = driver_processes(parent)
        commands = [" ".join(process.cmdline()) for process in selected]
        assert selected[0].pid == root.pid
        assert len(selected) == 2
        assert "driver" in commands[1]
        assert not any("pyspark.daemon" in command for command in commands[1:])
        assert driver_rss(parent) >= parent.memory_info().rss
    finally:
        for child in psutil.Process(root.pid).children():
            child.kill()
        root.kill()
        root.wait()


def test_driver_rss_parts_are_named_and_add_up_to_the_total() -> None:
    me = psutil.Process()
    parts = driver_rss_parts(me)
    assert set(parts) == {me.name()} | {child.name() for child in driver_processes(me)[1:]}
    assert sum(parts.values()) == pytest.approx(driver_rss(me), rel=0.05)


def test_cpu_description_names_the_model_and_the_int8_flags():
    from bench.int8 import cpu_description

    cpuinfo = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
        "flags\t\t: fpu sse avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_description(cpuinfo) == (
        "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz; flags: avx2 avx512f avx512_vnni"
    )
    assert cpu_description("model name\t: Old\nflags\t\t: sse2\n").endswith(
        "flags: none of avx2, avx512f, avx512_vnni, avx_vnni, amx_int8"
    )


def test_image_path_stages_both_ways_give_the_model_the_same_input() -> None:
    import mxnet as mx
    from batch_inference.config import Preprocess

    from bench.dataset import photo_jpeg
    from bench.image_path import STAGES, StageTimes, before_batch, measure, now_batch

    spec = Preprocess(image_size=32)
    bodies = {f"k{index}": photo_jpeg(index) for index in range(5)}
    old, new = (mx.nd.zeros((4, 3, 32, 32)) for _ in range(2))
    before_batch(list(bodies.values())[:3], spec, old, StageTimes())
    now_batch(
        list(bodies.values())[:3], spec, new, np.empty((4, 3, 32, 32), np.float32), StageTimes()
    )
    assert np.abs(old.asnumpy() - new.asnumpy()).max() <= 1e-6  # the fused normalisation's bound
    assert not new.asnumpy()[3].any()  # only the batch's own slots are written

    # at the ResNet size: a ~500x375 photo decodes at full scale, a draft to 112 px does not
    spec = Preprocess(image_size=224)
    before, now, draft = measure(bodies.__getitem__, list(bodies), spec, batch_size=2)
    assert before.images == now.images == 5
    for times in (before, now):
        ms = times.per_image_ms()
        assert set(ms) == {*STAGES, "total"} and all(value >= 0 for value in ms.values())
        assert ms["total"] == pytest.approx(sum(ms[stage] for stage in STAGES))
    assert now.seconds["batch"] == 0.0  # decoded into the batch array: nothing to stack
    assert draft["ms"] > 0 and draft["max_abs"] >= draft["mean_abs"] > 0  # draft moves pixels


def test_job_seconds_span_the_first_start_to_the_last_part() -> None:
    from bench.spark_run import job_seconds

    # part 0 ran 100-110, part 1 ran 95-112: the job ran from 95 to 112
    assert job_seconds([({"wall_seconds": 10}, 110.0), ({"wall_seconds": 17}, 112.0)]) == 17.0


def test_the_steady_rate_leaves_out_the_partition_that_started_first() -> None:
    from bench.spark_run import steady_rate

    first = ({"rows": 1000, "wall_seconds": 20.0}, 112.0)  # started at 92: the model load
    later = ({"rows": 1000, "wall_seconds": 8.0}, 120.0)  # started at 112
    last = ({"rows": 600, "wall_seconds": 8.0}, 128.0)
    assert steady_rate([later, first, last]) == 100.0
    with pytest.raises(ValueError, match="two partitions"):
        steady_rate([first])


def test_the_int8_ceiling_is_the_forward_over_the_forward_and_the_image_path():
    from bench.run_all import int8_ceiling_row

    row = int8_ceiling_row(bare_int8=125.0, image_path_ms=2.0)  # 8 ms forward + 2 ms per image
    assert row.value == "0.80"
    assert "int8 forward 8.0 ms + image path 2.00 CPU-ms per image" in row.name
    assert int8_ceiling_row(bare_int8=250.0, image_path_ms=4.0).value == "0.50"
