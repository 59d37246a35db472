"""The EMR step of one date: ``spark-submit ... --py-files <job zip> <main.py> <job arguments>``
through ``command-runner.jar`` (pure functions of the resolved request).

The job's arguments and the step's name are both backends' (:mod:`emr_inference.job_command`);
EMR adds the package versions its bootstrap installed. Arguments are always a list, never a shell
string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batch_inference.contract.settings import SETTING

from emr_inference.emr.releases import EmrRelease, supported_release
from emr_inference.job_command import job_arguments, step_name
from emr_inference.pins import pinned_versions
from emr_inference.resolved import ResolvedRequest

COMMAND_RUNNER_JAR = "command-runner.jar"


def required_packages(release: EmrRelease, requirements: str, runtime: str) -> list[str]:
    """``--require`` arguments: the runtime's package (EMR's mxnet where its application brings
    it, else the bootstrap's pin) and the bootstrap's pillow and boto3 pins (from the text of the
    release's requirements file), so the driver refuses an interpreter the bootstrap missed."""
    pins = {**pinned_versions(requirements, release.python), **release.application_packages}
    return [f"{name}=={pins[name]}" for name in (runtime, "pillow", "boto3")]


def emr_job_arguments(request: ResolvedRequest, manifest_uri: str) -> list[str]:
    """:func:`job_arguments` plus the package versions the bootstrap installed on the nodes."""
    from emr_inference.artifacts import bootstrap_files

    label = request.cluster.release_label
    pins = bootstrap_files(label)["bootstrap_requirements"].read_text()
    packages = required_packages(supported_release(label), pins, request.model.runtime)
    requires = SETTING["requirements"].arguments(packages)
    return [*job_arguments(request, manifest_uri), *requires]


def spark_submit_command(
    request: ResolvedRequest, artifacts: Mapping[str, str], manifest_uri: str
) -> list[str]:
    """``spark-submit`` on the EMR master (YARN, client mode: the driver log is the step log)."""
    return [
        "spark-submit",
        "--master", "yarn",
        "--deploy-mode", "client",
        "--name", step_name(request),
        "--py-files", artifacts["job_zip"],
        artifacts["entry_point"],
        *emr_job_arguments(request, manifest_uri),
    ]  # fmt: skip


def inference_step(
    request: ResolvedRequest, artifacts: Mapping[str, str], manifest_uri: str
) -> dict[str, Any]:
    """The AddJobFlowSteps step: the job via ``command-runner.jar``.

    ``ActionOnFailure=CONTINUE`` keeps the cluster for the teardown task, which terminates it
    whatever happened (and the sensor reports the step's failure reason first).
    """
    return {
        "Name": step_name(request),
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": COMMAND_RUNNER_JAR,
            "Args": spark_submit_command(request, artifacts, manifest_uri),
        },
    }
