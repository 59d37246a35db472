"""Static checks of the online predictor's Lambda images (no Docker engine here): the base image,
the handler it names, the packages it installs and the files it copies, for both images:
docker/lambda/Dockerfile (MXNet) and docker/lambda-onnxruntime/Dockerfile (the converted model on
ONNX Runtime, no MXNet)."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.test_docker_compose import _dockerfile_instructions

#: runtime -> the image's folder (its Dockerfile, Dockerfile.dockerignore and requirements.txt)
IMAGES = {
    "mxnet": REPO_ROOT / "docker" / "lambda",
    "onnxruntime": REPO_ROOT / "docker" / "lambda-onnxruntime",
}
DOCKERFILE = IMAGES["mxnet"] / "Dockerfile"
REQUIREMENTS = IMAGES["mxnet"] / "requirements.txt"
#: the MXNet image: packages pinned at another version than constraints.txt (said in its comment)
OLDER_IN_IMAGE = {"pillow"}
#: the Python of each image: MXNet's numpy < 1.24 has wheels up to 3.11, this venv's; ONNX Runtime's
#: image takes the first base image on Amazon Linux 2023
IMAGE_PYTHON = {
    "mxnet": f"{sys.version_info.major}.{sys.version_info.minor}",
    "onnxruntime": "3.12",
}


def pins(path: Path) -> dict[str, str]:
    """``{name: version}`` of a requirements file's ``name==version`` lines."""
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M)
    return {name.lower(): version for name, version in found}


def instructions(runtime: str, keyword: str) -> list[str]:
    """The arguments of each ``keyword`` instruction of the image's Dockerfile."""
    dockerfile = IMAGES[runtime] / "Dockerfile"
    return [args for key, args in _dockerfile_instructions(dockerfile) if key == keyword]


@pytest.mark.parametrize("runtime", IMAGES)
def test_the_image_is_the_aws_lambda_python_base_image_of_its_python(runtime):
    assert instructions(runtime, "FROM") == [
        f"public.ecr.aws/lambda/python:{IMAGE_PYTHON[runtime]}"
    ]


@pytest.mark.parametrize("runtime", IMAGES)
def test_the_command_is_the_handler_function(runtime):
    (command,) = instructions(runtime, "CMD")
    (target,) = json.loads(command)
    module, _, function = target.rpartition(".")
    handler = getattr(importlib.import_module(module), function)
    assert callable(handler) and handler.__module__ == "batch_inference.lambda_handler"


def installed_requirements(runtime: str) -> Path:
    """The requirements file the image's one ``pip install`` reads (into the task root, wheels
    only), checked to be the image folder's own."""
    runs = [shlex.split(args) for args in instructions(runtime, "RUN")]
    (pip,) = [run for run in runs if run[:2] == ["pip", "install"]]
    assert pip[pip.index("--target") + 1] == "${LAMBDA_TASK_ROOT}"
    assert "--only-binary=:all:" in pip  # nothing compiled in the image
    copied_to = {copy[-1]: copy[0] for copy in map(shlex.split, instructions(runtime, "COPY"))}
    source = REPO_ROOT / copied_to[pip[pip.index("-r") + 1]]
    assert source == IMAGES[runtime] / "requirements.txt"
    return source


def test_the_mxnet_image_installs_the_jobs_pins():
    requirements = installed_requirements("mxnet")
    image, constraints = pins(requirements), pins(REPO_ROOT / "constraints.txt")
    job = pins(REPO_ROOT / "requirements-job.txt")
    # the udf engine's, and the other runtime's and its quantizer's: not used online
    converted = {"onnx", "onnxruntime", "ml_dtypes", "openvino", "openvino-telemetry"}
    assert set(job) - set(image) == {"pandas", "pyarrow", *converted}
    for name, version in image.items():
        if name in OLDER_IN_IMAGE:
            assert version != constraints[name] and f"{name}: {version}" in requirements.read_text()
        else:
            assert version == constraints[name], name
    for name in ("requests", "graphviz", "botocore", "s3transfer", "urllib3"):
        assert name in image  # transitive dependencies are pinned too


def test_the_onnxruntime_image_installs_the_emr_7_13_nodes_pins_and_no_mxnet():
    """The same runtime as the batch job on emr-7.13.0, at the same versions (what the nodes
    install, the twin tests); no MXNet, no other runtime, and no converter (the model comes
    converted)."""
    image = pins(installed_requirements("onnxruntime"))
    nodes = pins(REPO_ROOT / "include" / "bootstrap" / "requirements-emr-7.13.0.txt")
    others = {"pip", "openvino", "openvino-telemetry"}
    assert image == {name: version for name, version in nodes.items() if name not in others}
    assert not {"mxnet", "onnx", "ml_dtypes"} & set(image)
    assert instructions("onnxruntime", "ENV") == ["RUNTIME=onnxruntime"]


@pytest.mark.parametrize("runtime", IMAGES)
def test_it_copies_the_job_package_and_the_context_lets_it_in(runtime):
    copies = [shlex.split(args) for args in instructions(runtime, "COPY")]
    assert ["spark_jobs/batch_inference", "${LAMBDA_TASK_ROOT}/batch_inference"] in copies
    ignore = (IMAGES[runtime] / "Dockerfile.dockerignore").read_text().splitlines()
    for copy in copies:
        source = copy[0]
        assert (REPO_ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"
