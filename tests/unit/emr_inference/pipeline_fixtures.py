"""Pipeline configs (and the DAG of a task context) shared by the Airflow-side unit tests."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

from emr_inference.config import PipelineConfig, parse_pipeline
from emr_inference.request import merge_params, resolve_request
from emr_inference.resolved import ResolvedRequest

MINIMAL: dict[str, Any] = {
    "pipeline": "unit",
    "backend": "emr",
    "input_uri": "s3://in-bucket/images/dt={{ partition_date }}/",
    "output_uri": "s3://out-bucket/predictions/dt={{ partition_date }}/",
    "model": {
        "name": "resnet18",
        "symbol": "s3://models/resnet18/resnet18-symbol.json",
        "params": "s3://models/resnet18/resnet18-0000.params",
        "labels": "s3://models/resnet18/labels.txt",
    },
}

#: MINIMAL's model as an ONNX file run as it is (no MXNet files; a converted runtime).
ONNX_MODEL: dict[str, Any] = {
    "name": "resnet18",
    "onnx": "s3://models/onnx/resnet18.onnx",
    "labels": "s3://models/resnet18/labels.txt",
    "runtime": "onnxruntime",
}


def pipeline_data(**overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`MINIMAL` with top-level fields replaced."""
    return {**copy.deepcopy(MINIMAL), **overrides}


def pipeline(**overrides: Any) -> PipelineConfig:
    """A validated config from :func:`pipeline_data`."""
    return parse_pipeline(pipeline_data(**overrides), "unit.yaml")


def resolved_request(**overrides: Any) -> ResolvedRequest:
    """The resolved request of a scheduled run of :func:`pipeline` (run of 2026-11-22)."""
    return resolve_request(
        pipeline(**overrides),
        {},
        dag_id="unit",
        run_id="scheduled__2026-11-22T00:00:00+00:00",
        data_interval_end=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
    )


def date_request(**fields: Any) -> dict[str, Any]:
    """The JSON form of a date's request (``stage_manifest``'s XCom) of :func:`resolved_request`,
    with ``fields`` merged over it (objects key by key) and validated again."""
    base = resolved_request().date_requests()[0].as_json()
    return ResolvedRequest.model_validate(merge_params(base, fields)).as_json()


@dataclasses.dataclass
class FakeDag:
    """The slice of a DAG a task's context gives the operators (``context["dag"].dag_id``)."""

    dag_id: str
