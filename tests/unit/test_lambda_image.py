"""Static checks of the online predictor's Lambda image, docker/lambda/Dockerfile (no Docker engine
here): the base image, the handler it names, the packages it installs and the files it copies."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.unit.test_docker_compose import _dockerfile_instructions

DOCKERFILE = REPO_ROOT / "docker" / "lambda" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "docker" / "lambda" / "requirements.txt"
#: packages the image pins at another version than constraints.txt (said in its comment)
OLDER_IN_IMAGE = {"pillow"}


def pins(path: Path) -> dict[str, str]:
    """``{name: version}`` of a requirements file's ``name==version`` lines."""
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M)
    return {name.lower(): version for name, version in found}


def test_the_image_is_the_aws_lambda_python_base_image_of_our_python():
    froms = [args for keyword, args in _dockerfile_instructions(DOCKERFILE) if keyword == "FROM"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert froms == [f"public.ecr.aws/lambda/python:{python}"]


def test_the_command_is_the_handler_function():
    (command,) = [
        args for keyword, args in _dockerfile_instructions(DOCKERFILE) if keyword == "CMD"
    ]
    (target,) = json.loads(command)
    module, _, function = target.rpartition(".")
    handler = getattr(importlib.import_module(module), function)
    assert callable(handler) and handler.__module__ == "batch_inference.lambda_handler"


def test_it_installs_the_pinned_runtime_packages_into_the_task_root():
    runs = [shlex.split(a) for k, a in _dockerfile_instructions(DOCKERFILE) if k == "RUN"]
    (pip,) = [run for run in runs if run[:2] == ["pip", "install"]]
    assert pip[pip.index("--target") + 1] == "${LAMBDA_TASK_ROOT}"
    assert "--only-binary=:all:" in pip  # nothing compiled in the image
    copies = [shlex.split(a) for k, a in _dockerfile_instructions(DOCKERFILE) if k == "COPY"]
    copied_to = {copy[-1]: copy[0] for copy in copies}
    assert copied_to[pip[pip.index("-r") + 1]] == "docker/lambda/requirements.txt"

    image, constraints = pins(REQUIREMENTS), pins(REPO_ROOT / "constraints.txt")
    job = pins(REPO_ROOT / "requirements-job.txt")
    # the udf engine's, and the other runtime's (the online predictor runs MXNet): not used online
    assert set(job) - set(image) == {"pandas", "pyarrow", "onnx", "onnxruntime"}
    for name, version in image.items():
        if name in OLDER_IN_IMAGE:
            assert version != constraints[name] and f"{name}: {version}" in REQUIREMENTS.read_text()
        else:
            assert version == constraints[name], name
    for name in ("requests", "graphviz", "botocore", "s3transfer", "urllib3"):
        assert name in image  # transitive dependencies are pinned too


def test_it_copies_the_job_package_and_the_context_lets_it_in():
    copies = [shlex.split(a) for k, a in _dockerfile_instructions(DOCKERFILE) if k == "COPY"]
    assert ["spark_jobs/batch_inference", "${LAMBDA_TASK_ROOT}/batch_inference"] in copies
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    for copy in copies:
        source = copy[0]
        assert (REPO_ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"
