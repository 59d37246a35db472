"""The supported EMR releases: what their nodes run decides the node twin and the bootstrap."""

from __future__ import annotations

import pytest
from emr_inference.artifacts import bootstrap_files
from emr_inference.config import ClusterConfig
from emr_inference.emr.job_flow import application_master_on_demand
from emr_inference.emr.releases import (
    DEFAULT_RELEASE,
    SUPPORTED_RELEASES,
    release_version,
    releases_with_runtime,
    supported_release,
)
from emr_inference.emr.steps import required_packages
from emr_inference.pins import pinned_versions


def test_release_labels_compare_as_numbers_not_strings() -> None:
    assert release_version("emr-7.10.0") > release_version("emr-7.2.0")
    assert "emr-7.10.0" < "emr-7.2.0"  # what a string comparison would have said


@pytest.mark.parametrize("label", ["7.2.0", "emr-7.x.0", "emr-"])
def test_a_malformed_label_names_the_field(label: str) -> None:
    with pytest.raises(ValueError, match=r"^cluster.release_label: .* is not an EMR label"):
        release_version(label)


def test_an_unsupported_release_names_the_supported_ones() -> None:
    with pytest.raises(KeyError, match=r"no node description for 'emr-6.0.0' \(supported: emr-7"):
        supported_release("emr-6.0.0")


def test_every_release_says_what_its_nodes_run_and_where_that_comes_from() -> None:
    for label, release in SUPPORTED_RELEASES.items():
        assert release.label == label and release.version >= (7, 0, 0)
        assert release.python.count(".") == 1 and release.spark.count(".") == 2
        assert release.base_python.endswith(("/python3", f"/python{release.python}"))
        assert "Spark" in release.applications and release.sources
        # MXNet runs where EMR's application brings it, and only there
        mxnet = "MXNet" in release.applications
        assert mxnet == ("mxnet" in release.runtimes) == ("mxnet" in release.application_packages)
        # the bootstrap installs every other runtime the row claims, for the nodes' Python
        pins = pinned_versions(bootstrap_files(label)["bootstrap_requirements"].read_text(),
                               release.python)  # fmt: skip
        for runtime in release.runtimes:
            assert runtime in pins or runtime in release.application_packages
    default = supported_release(DEFAULT_RELEASE)
    assert (default.python, default.spark, default.runtimes) == ("3.9", "3.5.1", ("mxnet",))


def test_the_driver_is_told_the_versions_the_release_installed() -> None:
    old, current = supported_release("emr-7.2.0"), supported_release("emr-7.13.0")
    old_pins = bootstrap_files(old.label)["bootstrap_requirements"].read_text()
    new_pins = bootstrap_files(current.label)["bootstrap_requirements"].read_text()
    assert required_packages(old, old_pins, "mxnet") == [
        "mxnet==1.9.1", "pillow==11.3.0", "boto3==1.42.97",
    ]  # fmt: skip
    assert required_packages(current, new_pins, "onnxruntime") == [
        "onnxruntime==1.32.0", "pillow==13.0.0", "boto3==1.43.117",
    ]  # fmt: skip
    assert required_packages(current, new_pins, "openvino")[0] == "openvino==2026.4.1"


def test_a_current_release_runs_a_maintained_runtime_on_python_3_11() -> None:
    assert releases_with_runtime("mxnet") == ["emr-7.2.0"]
    current = supported_release("emr-7.13.0")
    assert (current.python, current.spark, current.base_python) == (
        "3.11", "3.5.6", "/usr/bin/python3.11",
    )  # fmt: skip
    assert "MXNet" not in current.applications
    assert current.runtimes == ("onnxruntime", "openvino")
    assert releases_with_runtime("openvino") == ["emr-7.13.0"]


def test_the_application_master_label_applies_from_7_2_including_7_10() -> None:
    cluster = ClusterConfig.model_validate(
        {
            "task": {"instance_types": ["c5.9xlarge"], "count": 1, "market": "SPOT"},
            "core": {"instance_types": ["c5.9xlarge"], "count": 1, "market": "ON_DEMAND"},
        }
    )

    def on_release(label: str) -> ClusterConfig:
        return cluster.model_copy(update={"release_label": label})

    assert application_master_on_demand(on_release("emr-7.10.0"))
    assert application_master_on_demand(on_release("emr-7.2.0"))
    assert application_master_on_demand(on_release("emr-7.1.0")) is None
