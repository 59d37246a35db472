"""The Lambda images' pins, tried as each image installs them: a virtualenv of the image's Python
version (its Dockerfile's base image tag) built from exactly its requirements.txt
(``--only-binary=:all:``, as the Dockerfile runs it). In the MXNet image's, the online predictor's
tests run; in the ONNX Runtime image's (Python 3.12, no MXNet), the handler answers an API Gateway
event with the converted model, and its row is the MXNet model's.

Only the test tools are added to the MXNet image's venv (pytest and its plugins, scikit-learn for
the demo digits), under the image's pins as constraints, and the test checks that no pin moved.
The S3 server is this session's (moto runs outside the image's environment). Cached per
requirements file in build/lambda-venv-<hash>/. Needs the package index, like ``make venv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from emr_inference.pins import pinned_versions

from emr_inference_tools.node_twin import NodeTwinError, find_node_python
from tests.conftest import REPO_ROOT, SHARED_S3_ENV
from tests.unit.batch_inference import test_online
from tests.unit.batch_inference.test_online import (
    api_json,
    assert_prediction,
    body_of,
    converted_tiny_model,
)
from tests.unit.test_lambda_image import IMAGES, _dockerfile_instructions

pytestmark = pytest.mark.slow
#: the online predictor's tests' model and images in S3 (a fixture, found by this name)
online = test_online.online
#: what the handler's tests need besides the image's packages (pinned as in constraints.txt)
TEST_TOOLS = ("pytest", "pytest-timeout", "scikit-learn")


def image_python_version(runtime: str) -> str:
    """``3.11`` of ``FROM public.ecr.aws/lambda/python:3.11``."""
    dockerfile = IMAGES[runtime] / "Dockerfile"
    (base,) = [args for keyword, args in _dockerfile_instructions(dockerfile) if keyword == "FROM"]
    return base.rsplit(":", 1)[1]


def constraint(name: str) -> str:
    return f"{name}=={pinned_versions_of(REPO_ROOT / 'constraints.txt', 'mxnet')[name]}"


def pinned_versions_of(path: Path, runtime: str) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if "==" in line]
    return pinned_versions("\n".join(lines), image_python_version(runtime))


def pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def build_image_venv(runtime: str, tools: tuple[str, ...] = ()) -> Path:
    """The image's packages at its pins on its Python version, and ``tools`` under them (built
    once per pins file)."""
    version, requirements = image_python_version(runtime), IMAGES[runtime] / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + version.encode()).hexdigest()[:16]
    venv = REPO_ROOT / "build" / f"lambda-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        try:
            base = find_node_python(version, override_env=None)
        except NodeTwinError as error:
            pytest.fail(f"the Lambda image's Python: {error}", pytrace=False)
        subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
        pip(python, "install", "--only-binary=:all:", "-r", str(requirements))
        if tools:
            pins = [constraint(name) for name in tools]
            pip(python, "install", "--only-binary=:all:", "-c", str(requirements), *pins)
        (venv / ".complete").write_text(version + "\n")
    return python


@pytest.fixture(scope="module")
def image_venv() -> Path:
    """The MXNet image's venv, with the online predictor's test tools."""
    return build_image_venv("mxnet", TEST_TOOLS)


def installed(python: Path) -> dict[str, str]:
    freeze = subprocess.check_output([str(python), "-m", "pip", "freeze"], text=True)
    return {
        name.lower(): version
        for name, _, version in (line.partition("==") for line in freeze.splitlines())
    }


def test_the_image_pins_are_what_the_venv_holds(image_venv: Path) -> None:
    pins = pinned_versions_of(IMAGES["mxnet"] / "requirements.txt", "mxnet")
    got = installed(image_venv)
    assert {name: got.get(name) for name in pins} == pins  # the test tools moved no pin
    version = subprocess.check_output(
        [str(image_venv), "-c", "import platform; print(platform.python_version())"], text=True
    )
    assert version.startswith(image_python_version("mxnet") + ".")


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


#: The handler as Lambda's runtime calls it: the event in, the response out.
INVOKE = (
    "import json, sys\n"
    "from batch_inference.lambda_handler import handler\n"
    "print(json.dumps(handler(json.load(sys.stdin), None)))"
)


def test_the_onnxruntime_image_answers_with_the_mxnet_models_row(online) -> None:
    """Its pins exactly (no MXNet, no onnx), on Python 3.12: the handler answers an API Gateway
    request for an image with the row the MXNet model gives (probabilities within 1e-5)."""
    python = build_image_venv("onnxruntime")
    pins = pinned_versions_of(IMAGES["onnxruntime"] / "requirements.txt", "onnxruntime")
    assert installed(python) == pins
    uri, digest = converted_tiny_model(online)  # converted here, where MXNet is
    env = {**os.environ, "MODEL_ONNX": uri, "MODEL_ONNX_SHA256": digest, "RUNTIME": "onnxruntime"}
    image = online["uris"]["good"]
    result = subprocess.run(
        [str(python), "-c", INVOKE],
        input=json.dumps(api_json(online["bucket"], {"s3_uri": image})),
        cwd=REPO_ROOT / "spark_jobs", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    response = json.loads(result.stdout.splitlines()[-1])
    assert response["statusCode"] == 200, response
    assert_prediction(online, body_of(response), image, online["objects"]["good"].body)
