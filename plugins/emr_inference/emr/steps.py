"""The inference job's command line and its EMR step (pure functions of the resolved request).

:func:`job_arguments` is shared by both backends: the EMR step runs
``spark-submit ... --py-files <job zip> <main.py> <job_arguments>`` through ``command-runner.jar``,
the local backend runs the same arguments with its own ``spark-submit``. Arguments are always a
list, never a shell string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emr_inference.request import job_output_uri

COMMAND_RUNNER_JAR = "command-runner.jar"
#: The mxnet of EMR's MXNet application (emr-7.2.0); the other pins are the bootstrap's.
EMR_MXNET = "mxnet==1.9.1"


def _floats(values: list[float]) -> str:
    return ",".join(repr(float(value)) for value in values)


def model_arguments(model: Mapping[str, Any]) -> list[str]:
    """The job's model and preprocessing arguments for a request's ``model`` dict."""
    args = [
        "--model-name", model["name"],
        "--model-symbol", model["symbol"],
        "--model-params", model["params"],
        "--model-labels", model["labels"],
    ]  # fmt: skip
    for part in ("symbol", "params", "labels"):
        digest = model.get(f"{part}_sha256")
        if digest:
            args += [f"--model-{part}-sha256", digest]
    return args + [
        "--input-name", model["input_name"],
        "--image-size", str(model["image_size"]),
        "--mean", _floats(model["mean"]),
        "--std", _floats(model["std"]),
        "--scale", repr(float(model["scale"])),
    ]  # fmt: skip


def job_arguments(request: Mapping[str, Any], manifest_uri: str) -> list[str]:
    """The job's CLI arguments (docs/CONTRACTS.md "Job command line") for this request."""
    args = [
        "--manifest", manifest_uri,
        "--output", job_output_uri(request),
        "--run-id", request["run_id"],
        *model_arguments(request["model"]),
    ]  # fmt: skip
    args += [
        "--batch-size", str(request["batch_size"]),
        "--top-k", str(request["top_k"]),
        "--partitions", str(request["partitions"]),
        # .get: a run resolved by the previous version (in flight across a deploy) lacks the key
        "--max-partition-keys", str(request.get("max_partition_keys", 5000)),
        "--max-error-rate", repr(float(request["max_error_rate"])),
        "--prefetch-threads", str(request["prefetch_threads"]),
        "--prefetch-depth", str(request["prefetch_depth"]),
        "--omp-threads", str(request["omp_threads"]),
        "--sse", request["sse"]["mode"],
        "--engine", request.get("engine", "rdd"),
    ]  # fmt: skip
    if request["sse"].get("kms_key_id"):
        args += ["--sse-kms-key-id", request["sse"]["kms_key_id"]]
    if request.get("precision", "fp32") == "int8":
        args += int8_arguments(request)
    return args


def int8_arguments(request: Mapping[str, Any]) -> list[str]:
    """The job's int8 arguments; quantized models are cached under ``<artifacts_uri>int8/``."""
    int8 = request["int8"]
    args = [
        "--precision", "int8",
        "--int8-cache", request["artifacts_uri"] + "int8/",
        "--int8-min-agreement", repr(float(int8["min_agreement"])),
        "--calibration-images", str(int8["calibration_images"]),
        "--agreement-images", str(int8["agreement_images"]),
    ]  # fmt: skip
    if int8["calibration_uri"]:
        args += ["--calibration-uri", int8["calibration_uri"]]
    if int8["on_disagreement"] == "fp32":
        args.append("--int8-fallback")
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
    requires = [arg for pin in required_packages(pins) for arg in ("--require", pin)]
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
