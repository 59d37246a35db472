"""The supported EMR releases: what their nodes run decides the node twin and the bootstrap."""

from __future__ import annotations

import pytest
from emr_inference.emr.job_flow import application_master_on_demand
from emr_inference.emr.releases import (
    DEFAULT_RELEASE,
    SUPPORTED_RELEASES,
    release_version,
    supported_release,
)
from emr_inference.emr.steps import EMR_MXNET


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
        assert {"mxnet", "numpy"} <= release.application_packages.keys()
        assert release.sources
    default = supported_release(DEFAULT_RELEASE)
    assert (default.python, default.spark) == ("3.9", "3.5.1")
    assert f"mxnet=={default.application_packages['mxnet']}" == EMR_MXNET


def test_the_application_master_label_applies_from_7_2_including_7_10() -> None:
    cluster = {
        "task": {"market": "SPOT"},
        "core": {"market": "ON_DEMAND"},
    }
    assert application_master_on_demand({**cluster, "release_label": "emr-7.10.0"})
    assert application_master_on_demand({**cluster, "release_label": "emr-7.2.0"})
    assert application_master_on_demand({**cluster, "release_label": "emr-7.1.0"}) is None
