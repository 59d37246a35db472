"""The EMR bootstrap action installs the pinned, hash-checked job dependencies into an interpreter.

EMR nodes run Python 3.9; this machine runs 3.11. requirements-emr.txt carries the cp311 x86_64
pillow hash besides the cp39 ones, so the same file, through the same script, installs here into a
scratch virtualenv (JOB_PYTHON points the script at it). Needs the package index, like `make venv`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "include" / "bootstrap" / "install_job_deps.sh"
REQUIREMENTS = REPO_ROOT / "include" / "bootstrap" / "requirements-emr.txt"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bootstrap") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _run(python: Path, requirements: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), str(requirements)],
        env={**os.environ, "JOB_PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pins(requirements: Path) -> dict[str, str]:
    lines = requirements.read_text().splitlines()
    return dict(line.split(" ")[0].split("==") for line in lines if "==" in line and line[0] != "#")


def test_tampered_hash_fails_and_installs_nothing(venv: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "requirements.txt"
    text = REQUIREMENTS.read_text()
    tampered.write_text(text.replace("sha256:4721f391", "sha256:0000f391"))  # six's hash
    assert tampered.read_text() != text
    result = _run(venv, tampered)
    assert result.returncode != 0
    assert "hash" in result.stderr.lower()
    assert subprocess.run([str(venv), "-c", "import boto3"], capture_output=True).returncode != 0


def test_installs_the_pinned_versions(venv: Path) -> None:
    result = _run(venv, REQUIREMENTS)
    assert result.returncode == 0, result.stderr
    pins = _pins(REQUIREMENTS)
    assert f"pillow {pins['pillow']} boto3 {pins['boto3']}" in result.stdout
    frozen = subprocess.run(
        [str(venv), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    installed = dict(line.split("==") for line in frozen.splitlines() if "==" in line)
    assert {name.lower(): v for name, v in installed.items()} == {
        name.lower(): v for name, v in pins.items()
    }


def test_usage_error_without_requirements() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr
