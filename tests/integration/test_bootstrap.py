"""The EMR bootstrap action on a node whose system Python is owned by RPMs (Amazon Linux 2023).

The node is reproduced here: a copy of this machine's Python installation (a real prefix, not a
virtualenv) stands for ``/usr/bin/python3``, with packages installed the way an RPM installs them
(a ``.dist-info`` with ``INSTALLER`` = rpm and no ``RECORD`` file, at versions other than our pins)
plus stand-ins for EMR's mxnet and numpy. Installing our pins straight into that interpreter, as
the bootstrap did before, fails ("Cannot uninstall ... RECORD file not found"); the bootstrap
makes a virtualenv over it instead, installs the hash-checked pins there, and the job's interpreter
sees both our pins and EMR's mxnet/numpy while no system package changes.

requirements-emr.txt carries the cp311 x86_64 pillow hash besides the cp39 ones, so the same file
installs here. Needs the package index (or, for the wheelhouse test, only to fill the wheelhouse).
The same bootstrap on the nodes' own CPython 3.9, with EMR's real mxnet and numpy, is the node
twin (tests/integration/test_node_twin.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from emr_inference.pins import pinned_versions

from emr_inference_tools.node_twin import copy_interpreter, site_packages
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "include" / "bootstrap" / "install_job_deps.sh"
REQUIREMENTS = REPO_ROOT / "include" / "bootstrap" / "requirements-emr.txt"
#: What AL2023's python3 RPMs ship (other versions than our pins), and EMR's MXNet application.
RPM_PACKAGES = {"urllib3": "1.25.10", "six": "1.15.0", "jmespath": "0.10.0"}
EMR_PACKAGES = {"mxnet": "1.9.1", "numpy": "1.23.5"}

pytestmark = pytest.mark.slow


def node_python(root: Path, *, with_ensurepip: bool = True) -> Path:
    """A copy of this machine's Python installation at ``root`` (stdlib only, empty site-packages):
    a system interpreter whose site-packages we may change."""
    python = copy_interpreter(Path(sys.executable), root)
    if not with_ensurepip:
        shutil.rmtree(site_packages(python).parent / "ensurepip")
    return python


def rpm_install(python: Path, packages: dict[str, str]) -> None:
    """Install importable stand-ins the way an RPM does: no RECORD file, INSTALLER = rpm."""
    site = site_packages(python)
    for name, version in packages.items():
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"__version__ = {version!r}\n")
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("rpm\n")


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """An AL2023-like system interpreter: pip present, RPM-owned packages, EMR's mxnet/numpy."""
    python = node_python(tmp_path / "usr")
    subprocess.run([str(python), "-m", "ensurepip"], check=True, capture_output=True)
    rpm_install(python, {**RPM_PACKAGES, **EMR_PACKAGES})
    return python


def run_bootstrap(*args: str | Path, env: dict[str, str] | None = None):
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def pins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """The pins this interpreter installs (environment markers evaluated for it)."""
    return pinned_versions(requirements.read_text(), platform.python_version())


def imported_versions(python: Path, modules: list[str]) -> dict[str, str]:
    code = "import importlib, sys\nfor m in sys.argv[1:]: print(m, importlib.import_module(m)."
    code += "__version__)"
    out = subprocess.check_output([str(python), "-c", code, *modules], text=True)
    return dict(line.split() for line in out.splitlines())


def test_installing_into_the_rpm_owned_system_python_fails(node: Path) -> None:
    """What the bootstrap used to do: ``pip install`` the pins into /usr/bin/python3."""
    result = subprocess.run(
        [str(node), "-m", "pip", "install", "--require-hashes", "--only-binary=:all:",
         "-r", str(REQUIREMENTS)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Cannot uninstall" in result.stderr and "RECORD" in result.stderr, result.stderr
    assert "rpm" in result.stderr


def test_the_bootstrap_makes_a_virtualenv_over_it_and_touches_no_system_package(
    node: Path, tmp_path: Path
) -> None:
    job_python = tmp_path / "opt" / "emr-inference" / "bin" / "python3"
    system_before = sorted(p.name for p in site_packages(node).iterdir())
    result = run_bootstrap(
        "--python", job_python, "--base-python", node, "--requirements", REQUIREMENTS
    )
    assert result.returncode == 0, result.stderr
    assert "job environment: mxnet 1.9.1 numpy 1.23.5" in result.stdout  # no onnxruntime pinned
    # our pins win in the job's interpreter; EMR's mxnet and numpy are still seen
    expected = {"urllib3": pins()["urllib3"], "six": pins()["six"], "jmespath": pins()["jmespath"]}
    assert imported_versions(job_python, [*expected, *EMR_PACKAGES]) == {**expected, **EMR_PACKAGES}
    assert imported_versions(job_python, ["boto3"]) == {"boto3": pins()["boto3"]}
    # and the system interpreter is as the RPMs left it
    assert sorted(p.name for p in site_packages(node).iterdir()) == system_before
    assert imported_versions(node, list(RPM_PACKAGES)) == RPM_PACKAGES


def test_a_tampered_hash_fails_and_installs_nothing(node: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "requirements.txt"
    text = REQUIREMENTS.read_text()
    tampered.write_text(text.replace("sha256:4721f391", "sha256:0000f391"))  # six's hash
    assert tampered.read_text() != text
    job_python = tmp_path / "venv" / "bin" / "python3"
    result = run_bootstrap(
        "--python", job_python, "--base-python", node, "--requirements", tampered
    )
    assert result.returncode != 0
    assert "hash" in result.stderr.lower()
    check = subprocess.run([str(job_python), "-c", "import boto3"], capture_output=True)
    assert check.returncode != 0


def test_no_pip_and_no_index_installs_from_the_wheelhouse(tmp_path: Path) -> None:
    """A node whose Python has neither pip nor ensurepip, in a subnet without PyPI."""
    bare = node_python(tmp_path / "usr", with_ensurepip=False)
    rpm_install(bare, EMR_PACKAGES)
    assert subprocess.run([str(bare), "-m", "pip", "--version"], capture_output=True).returncode
    wheels = tmp_path / "wheelhouse"
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d"]
    subprocess.run(
        [*download, str(wheels), "--require-hashes", "-r", str(REQUIREMENTS)], check=True
    )

    job_python = tmp_path / "venv" / "bin" / "python3"
    result = run_bootstrap(
        "--python", job_python, "--base-python", bare, "--requirements", REQUIREMENTS,
        "--wheelhouse", wheels,
        env={"PIP_INDEX_URL": "http://127.0.0.1:9/unreachable"},  # no index: wheels only
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Installing pip into" in result.stdout and "from the wheelhouse" in result.stdout
    assert imported_versions(job_python, ["boto3", "PIL"]) == {
        "boto3": pins()["boto3"],
        "PIL": pins()["pillow"],
    }


def test_usage_error_without_python_or_requirements() -> None:
    result = run_bootstrap("--requirements", REQUIREMENTS)
    assert result.returncode == 2 and "usage" in result.stderr
