"""The Lambda image's pins, tried as the image installs them: a virtualenv of the image's Python
version (docker/lambda/Dockerfile's base image tag) built from exactly
docker/lambda/requirements.txt (``--only-binary=:all:``, as the Dockerfile runs it), in which the
online predictor's tests run.

Only the test tools are added (pytest and its plugins, scikit-learn for the demo digits), under
the image's pins as constraints, and the test checks that no pin moved. The S3 server is this
session's (moto runs outside the image's environment). Cached per requirements file in
build/lambda-venv-<hash>/. Needs the package index, like ``make venv``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from emr_inference.pins import pinned_versions

from tests.conftest import REPO_ROOT, SHARED_S3_ENV
from tests.unit.test_lambda_image import DOCKERFILE, REQUIREMENTS, _dockerfile_instructions
from tools.node_twin import NodeTwinError, find_node_python

pytestmark = pytest.mark.slow
#: what the handler's tests need besides the image's packages (pinned as in constraints.txt)
TEST_TOOLS = ("pytest", "pytest-timeout", "scikit-learn")


def image_python_version() -> str:
    """``3.11`` of ``FROM public.ecr.aws/lambda/python:3.11``."""
    (base,) = [args for keyword, args in _dockerfile_instructions(DOCKERFILE) if keyword == "FROM"]
    return base.rsplit(":", 1)[1]


def constraint(name: str) -> str:
    return f"{name}=={pinned_versions_of(REPO_ROOT / 'constraints.txt')[name]}"


def pinned_versions_of(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if "==" in line]
    return pinned_versions("\n".join(lines), image_python_version())


def pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def image_venv() -> Path:
    """The image's packages at its pins, on its Python version (built once per pins file)."""
    version = image_python_version()
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + version.encode()).hexdigest()[:16]
    venv = REPO_ROOT / "build" / f"lambda-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        try:
            base = find_node_python(version, override_env=None)
        except NodeTwinError as error:
            pytest.fail(f"the Lambda image's Python: {error}", pytrace=False)
        subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
        pip(python, "install", "--only-binary=:all:", "-r", str(REQUIREMENTS))
        tools = [constraint(name) for name in TEST_TOOLS]
        pip(python, "install", "--only-binary=:all:", "-c", str(REQUIREMENTS), *tools)
        (venv / ".complete").write_text(version + "\n")
    return python


def test_the_image_pins_are_what_the_venv_holds(image_venv: Path) -> None:
    freeze = subprocess.check_output([str(image_venv), "-m", "pip", "freeze"], text=True)
    installed = {
        name.lower(): version
        for name, _, version in (line.partition("==") for line in freeze.splitlines())
    }
    pins = pinned_versions_of(REQUIREMENTS)
    assert {name: installed.get(name) for name in pins} == pins  # the test tools moved no pin
    version = subprocess.check_output(
        [str(image_venv), "-c", "import platform; print(platform.python_version())"], text=True
    )
    assert version.startswith(image_python_version() + ".")


def test_the_online_predictor_tests_pass_on_the_image_pins(image_venv: Path, s3_server) -> None:
    result = subprocess.run(
        [str(image_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/unit/batch_inference/test_online.py"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
             SHARED_S3_ENV: s3_server.endpoint_url},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
