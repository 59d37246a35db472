"""The node twin (``emr_inference_tools/node_twin.py``) is an EMR node: its job interpreter is the
bootstrap's
virtualenv over CPython 3.9 with EMR's mxnet and numpy, the system interpreter keeps its RPMs,
every job module imports there, and the two defects that would have failed every cluster
(urllib3 2 pinned for a 3.9 botocore; ``enum.StrEnum`` in the job) fail here, named."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from batch_inference.package import PACKAGE_DIR, build_job_zip, package_sources

from emr_inference_tools.node_twin import (
    NodeTwin,
    NodeTwinError,
    build_twin,
    check_job_imports,
    expected_versions,
    node_test_tools,
)
from tests.conftest import REPO_ROOT, SHARED_S3_ENV
from tests.integration.test_bootstrap import imported_versions
from tests.support.old_pins import write_single_urllib3_2_pin

pytestmark = pytest.mark.slow


def test_the_job_interpreter_is_the_nodes(node_twin: NodeTwin) -> None:
    assert node_twin.versions["python"].startswith("3.9.")
    wanted = expected_versions(node_twin.release, node_twin.requirements.read_text())
    assert {k: v for k, v in node_twin.versions.items() if k != "python"} == wanted
    # our pins win in the virtualenv; the system interpreter is as its RPMs left it
    assert imported_versions(node_twin.python, ["urllib3", "six"]) == {
        "urllib3": "1.26.20",
        "six": "1.17.0",
    }
    system = node_twin.release.system_packages
    assert imported_versions(node_twin.system_python, ["urllib3", "six"]) == {
        "urllib3": system["urllib3"],
        "six": system["six"],
    }
    assert node_twin.spark_submit.exists()


def test_every_job_module_imports_on_the_nodes_python(node_twin: NodeTwin) -> None:
    imported = check_job_imports(node_twin)
    expected = {
        ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        )
        for path in package_sources()
    }
    assert set(imported) == expected and "batch_inference.contract.formats" in expected


def test_a_newer_standard_library_name_fails_the_import_naming_the_module(
    node_twin: NodeTwin, tmp_path: Path
) -> None:
    archive = build_job_zip(tmp_path / "batch_inference.zip")
    with zipfile.ZipFile(archive, "a") as job:
        job.writestr("batch_inference/contract/newer.py", "from enum import StrEnum\n")
    with pytest.raises(NodeTwinError) as raised:
        check_job_imports(node_twin, archive)
    message = str(raised.value)
    assert f"1 of {len(package_sources()) + 1} job modules do not import" in message
    assert "batch_inference.contract.newer: ImportError: cannot import name 'StrEnum'" in message


def test_a_single_urllib3_2_pin_fails_the_bootstrap_on_the_node(tmp_path: Path) -> None:
    """The pins before the twin: botocore on 3.9 needs urllib3 < 1.27."""
    old = write_single_urllib3_2_pin(tmp_path / "requirements-emr.txt")
    with pytest.raises(NodeTwinError) as raised:
        build_twin(requirements=old, log=lambda _: None, under=tmp_path / "twins")
    assert "the bootstrap action (install_job_deps.sh) on the emr-7.2.0 twin failed" in str(
        raised.value
    )
    assert "ResolutionImpossible" in str(raised.value)
    assert "botocore 1.42.97 depends on urllib3<1.27" in str(raised.value)  # the cause, named


def test_make_twin_as_the_readme_writes_it(node_twin: NodeTwin) -> None:
    result = subprocess.run(
        ["make", "twin"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"[twin] {node_twin.describe()}" in result.stdout
    assert f"[twin] {len(package_sources())} job modules import on the twin" in result.stdout


def test_the_jobs_unit_tests_pass_on_the_nodes_python(node_twin: NodeTwin, s3_server) -> None:
    """tests/unit/batch_inference under CPython 3.9 with the bootstrap's pins and EMR's mxnet and
    numpy: the job's own behaviour, not only its imports, on the interpreter the nodes run. The
    S3 server is this session's; the test tools are a folder beside the twin."""
    tools = node_test_tools(node_twin, REPO_ROOT / "tests" / "support" / "node-test-tools.txt")
    result = subprocess.run(
        [str(node_twin.python), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "-m", "not slow", "tests/unit/batch_inference"],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
             "PYTHONPATH": str(tools), SHARED_S3_ENV: s3_server.endpoint_url},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    # what a node lacks by design is skipped, saying why; nothing else is
    skipped = re.findall(r"SKIPPED \[\d+\] (.*)", result.stdout)
    assert skipped and all("EMR nodes lack it" in reason for reason in skipped), skipped
