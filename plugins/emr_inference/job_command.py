"""The job's command line, as both backends run it (pure functions of the resolved request).

EMR wraps it in its step (:mod:`emr_inference.emr.steps`: ``command-runner.jar``, YARN, the
bootstrap's package pins), the local backend hands it to its own ``spark-submit``
(:mod:`emr_inference.local.operators`). Every argument comes from the contract's settings
(:data:`batch_inference.contract.settings.SETTINGS`), read from the request by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batch_inference.contract.settings import CONVERSION, INT8, JOB, SETTINGS, STEP

from emr_inference.resolved import ResolvedRequest


def model_arguments(model: Mapping[str, Any]) -> list[str]:
    """The job's model and preprocessing arguments for a request's ``model`` dict."""
    return [
        arg
        for setting in SETTINGS
        if setting.name.startswith("model.")
        for arg in setting.arguments(setting.read({"model": model}))
    ]


def job_arguments(request: ResolvedRequest, manifest_uri: str) -> list[str]:
    """The job's CLI arguments (docs/CONTRACTS.md "Job command line") for this request.

    Every setting of :data:`batch_inference.contract.settings.SETTINGS` that the Airflow side
    passes, read from the request by its name; the int8 settings only in an int8 run, whose
    quantized models are cached under ``<artifacts_uri>int8/``, and the conversion settings only
    with a runtime other than mxnet, whose converted models are cached under
    ``<artifacts_uri>converted/``.
    """
    int8 = request.precision == "int8"
    converted = request.model.runtime != "mxnet"
    derived = {"manifest": manifest_uri, "output": request.job_output_uri.uri}
    if int8:
        derived["int8.cache"] = request.artifacts_uri.uri + "int8/"
    if converted:
        derived["conversion.cache"] = request.artifacts_uri.uri + "converted/"
    unused_groups = {group for group, used in ((INT8, int8), (CONVERSION, converted)) if not used}
    values = request.as_json()
    args: list[str] = []
    for setting in SETTINGS:
        if setting.source == JOB or setting.group in unused_groups:
            continue
        value = derived[setting.name] if setting.source == STEP else setting.read(values)
        args += setting.arguments(value)
    return args


def step_name(request: ResolvedRequest) -> str:
    """The step's name: unique per DAG run and date, so a retried submit finds the step it added
    (the run id is cut first: the date must stay in the name)."""
    date = f" {request.partition_date}"
    run = f"batch-inference {request.dag_id} {request.run_id}"
    return run[: 256 - len(date)] + date
