"""The inference job's command line and its EMR step (pure functions of the resolved request).

:func:`job_arguments` is shared by both backends: the EMR step runs
``spark-submit ... --py-files <job zip> <main.py> <job_arguments>`` through ``command-runner.jar``,
the local backend runs the same arguments with its own ``spark-submit``. Arguments are always a
list, never a shell string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batch_inference.contract.settings import INT8, JOB, SETTING, SETTINGS, STEP

from emr_inference.request import job_output_uri

COMMAND_RUNNER_JAR = "command-runner.jar"
#: The mxnet of EMR's MXNet application (emr-7.2.0); the other pins are the bootstrap's.
EMR_MXNET = "mxnet==1.9.1"


def model_arguments(model: Mapping[str, Any]) -> list[str]:
    """The job's model and preprocessing arguments for a request's ``model`` dict."""
    return [
        arg
        for setting in SETTINGS
        if setting.name.startswith("model.")
        for arg in setting.arguments(setting.read({"model": model}))
    ]


def job_arguments(request: Mapping[str, Any], manifest_uri: str) -> list[str]:
    """The job's CLI arguments (docs/CONTRACTS.md "Job command line") for this request.

    Every setting of :data:`batch_inference.contract.settings.SETTINGS` that the Airflow side
    passes, read from the request by its name; the int8 settings only in an int8 run, whose
    quantized models are cached under ``<artifacts_uri>int8/``.
    """
    int8 = request.get("precision", "fp32") == "int8"
    derived = {"manifest": manifest_uri, "output": job_output_uri(request)}
    if int8:
        derived["int8.cache"] = request["artifacts_uri"] + "int8/"
    args: list[str] = []
    for setting in SETTINGS:
        if setting.source == JOB or (setting.group == INT8 and not int8):
            continue
        value = derived[setting.name] if setting.source == STEP else setting.read(request)
        args += setting.arguments(value)
    return args


def step_name(request: Mapping[str, Any]) -> str:
    """The step's name: unique per DAG run and date, so a retried submit finds the step it added
    (the run id is cut first: the date must stay in the name)."""
    date = f" {request['partition_date']}"
    run = f"batch-inference {request['dag_id']} {request['run_id']}"
    return run[: 256 - len(date)] + date


def required_packages(requirements: str) -> list[str]:
    """``--require`` arguments: EMR's mxnet and the bootstrap's pillow and boto3 pins (from the
    text of requirements-emr.txt), so the driver refuses an interpreter the bootstrap missed."""
    pins = {}
    for line in requirements.splitlines():
        name, _, version = line.split(" ")[0].partition("==")
        if version and not line.startswith("#"):
            pins[name.lower()] = version
    return [EMR_MXNET, *(f"{name}=={pins[name]}" for name in ("pillow", "boto3"))]


def emr_job_arguments(request: Mapping[str, Any], manifest_uri: str) -> list[str]:
    """:func:`job_arguments` plus the package versions the bootstrap installed on the nodes."""
    from emr_inference.artifacts import bootstrap_files

    pins = bootstrap_files()["bootstrap_requirements"].read_text()
    requires = SETTING["requirements"].arguments(required_packages(pins))
    return [*job_arguments(request, manifest_uri), *requires]


def spark_submit_command(
    request: Mapping[str, Any], artifacts: Mapping[str, str], manifest_uri: str
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
    request: Mapping[str, Any], artifacts: Mapping[str, str], manifest_uri: str
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
