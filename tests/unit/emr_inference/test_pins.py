"""The bootstrap's requirements file as data: pins, hashes and environment markers evaluated for
the interpreter that installs them (the nodes' 3.9, not this machine's 3.11)."""

from __future__ import annotations

import pytest
from emr_inference.artifacts import bootstrap_files
from emr_inference.pins import parse_pins, pinned_versions, requirements_for

TEXT = """\
# a comment line
boto3==1.42.97 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
urllib3==1.26.20 ; python_version < "3.10" \\
    --hash=sha256:cccc
urllib3==2.6.3 ; python_version >= "3.10" \\
    --hash=sha256:dddd
pip==25.2 --hash=sha256:eeee  # pinned too
"""


def test_markers_choose_the_pin_of_the_installing_interpreter() -> None:
    assert pinned_versions(TEXT, "3.9") == {"boto3": "1.42.97", "urllib3": "1.26.20", "pip": "25.2"}
    assert pinned_versions(TEXT, "3.11")["urllib3"] == "2.6.3"
    assert pinned_versions(TEXT, "3.10.4")["urllib3"] == "2.6.3"  # a full version works too


def test_the_node_file_keeps_the_hashes_and_drops_the_markers() -> None:
    lines = requirements_for(TEXT, "3.9").splitlines()
    assert lines == [
        "boto3==1.42.97 --hash=sha256:aaaa --hash=sha256:bbbb",
        "urllib3==1.26.20 --hash=sha256:cccc",
        "pip==25.2 --hash=sha256:eeee",
    ]


def test_a_pin_that_is_not_exact_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"'six>=1.15' is not pinned with =="):
        parse_pins("six>=1.15\n")


def test_the_shipped_file_installs_a_botocore_compatible_urllib3_on_the_nodes() -> None:
    """botocore on Python < 3.10 requires urllib3 < 1.27: a single urllib3 2 pin made every
    bootstrap fail with ResolutionImpossible on the nodes' 3.9."""
    text = bootstrap_files()["bootstrap_requirements"].read_text()
    node, here = pinned_versions(text, "3.9"), pinned_versions(text, "3.11")
    assert tuple(int(n) for n in node["urllib3"].split(".")[:2]) < (1, 27)
    assert here["urllib3"].startswith("2.")
    assert all(pin.hashes for pin in parse_pins(text))  # --require-hashes needs every one
    assert node.keys() == here.keys()  # the same packages on both, only versions differ
