"""The helpers of bench/cost_per_million.py, bench/nncf_int8.py and bench/image_decoders.py: what
their tables rest on."""

from __future__ import annotations

from bench.cost_per_million import NIGHT_HOURS, shapes_costs
from bench.dataset import photo_jpeg
from bench.image_decoders import dct_scale, pillow_draft_below, pillow_job
from bench.nncf_int8 import installed_mb
from tests.conftest import REPO_ROOT

PIPELINE = REPO_ROOT / "include" / "pipelines" / "cifar10_resnet18_onnx.yaml"


def test_the_cheapest_shapes_come_first_finish_in_a_night_and_a_faster_task_costs_less():
    fp32, int8 = shapes_costs(PIPELINE, 25.0), shapes_costs(PIPELINE, 55.0)
    assert fp32 and int8
    assert [row["usd"] for row in fp32] == sorted(row["usd"] for row in fp32)
    assert all(row["hours"] <= NIGHT_HOURS for row in fp32 + int8)
    assert int8[0]["usd"] < fp32[0]["usd"]
    shipped = next(row for row in fp32 if row["shape"] == "4 x c5.9xlarge + m5.xlarge")
    assert fp32[0]["usd"] < shipped["usd"]  # one node pays the start-up once, not four times


def test_an_installed_size_counts_each_dependency_once():
    alone = installed_mb("pydantic", {"pydantic-core", "typing-extensions", "annotated-types"})
    assert 0 < alone < installed_mb("pydantic")
    assert installed_mb("pydantic", {"pydantic"}) == 0.0  # already counted
    assert installed_mb("no-such-distribution") == 0.0


def test_the_reduced_decode_keeps_both_sides_at_least_the_input_as_the_jobs_draft_does():
    photo = photo_jpeg(0)  # ~500x375
    assert dct_scale(photo, 224) == 1  # 375 / 2 < 224
    assert dct_scale(photo, 160) == 2 and dct_scale(photo, 40) == 8
    assert pillow_job(photo, 224).shape == pillow_draft_below(photo, 224).shape == (224, 224, 3)
