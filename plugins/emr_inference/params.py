"""Airflow Params generated from a pipeline config.

The JSON schema of every Param is derived from the pydantic models in
:mod:`emr_inference.config` (types, enums, minimum/maximum, patterns; dates also ``format: date``,
which Airflow's validator checks; s3 URIs also a ``not`` pattern refusing bad buckets and
``..``/``.``/empty key segments), so the trigger form, the REST API (400 naming the Param) and
the YAML check enforce the same rules.

Nested objects (``model``, ``sse``, ``cluster``, ``local``) are Params of type ``object`` whose
properties are all optional and closed (``additionalProperties: false``): a run may override part
of one, at any depth (``{"cluster": {"core": {"market": "SPOT"}}}``), and
:func:`emr_inference.request.resolve_request` merges it over the pipeline's values. Airflow 3.3
checks no ``conf`` key that is not a Param; ``resolve_request`` refuses those.

The trigger form: every Param has a ``title`` a person reads, a one-line description and a place
in :data:`FORM` (its ``section``, the order). Airflow 3.3's form shows the Params in accordion
sections, in the order of each section's first Param; Params without a ``section`` make up its
own "Run Parameters" section, the only one open when the form opens (the others are folded under
their names, and opening one folds the one that was open). So the everyday fields (what to run)
have no ``section``, and everything else is folded away under a named section. ``title`` and
``section`` are annotations: they change nothing of what the schema accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emr_inference.config import PipelineConfig, RequestDefaults

# Defaults come from the pipeline; nested fields are all optional (partial overrides merge).
_DROPPED_KEYS = {"title", "default", "required"}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """Resolve ``$ref``s, collapse ``anyOf [X, null]`` into ``type: [X, "null"]``, drop noise."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    any_of = schema.get("anyOf")
    if any_of and len(any_of) == 2 and {"type": "null"} in any_of:
        (other,) = [option for option in any_of if option != {"type": "null"}]
        merged = _inline(other, defs)
        if "type" in merged:
            merged["type"] = [merged["type"], "null"]
        else:  # an enum or object without a declared type
            merged = {"anyOf": [merged, {"type": "null"}]}
        extra = {k: v for k, v in schema.items() if k not in _DROPPED_KEYS | {"anyOf"}}
        return {**merged, **extra}
    return {
        key: _inline(value, defs) if key not in ("enum", "const", "pattern") else value
        for key, value in schema.items()
        if key not in _DROPPED_KEYS
    }


def param_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each request field, keyed by field name (without defaults)."""
    full = RequestDefaults.model_json_schema()
    defs = full.get("$defs", {})
    return {name: _inline(schema, defs) for name, schema in full["properties"].items()}


#: The trigger form's own section for Params without a ``section`` (Airflow 3.3's UI names it
#: so and opens it when the form opens).
RUN_PARAMETERS = "Run Parameters"
#: Where a Param missing from :data:`FORM` goes (a unit test makes sure none is).
ADVANCED = "Tuning (advanced)"


@dataclass(frozen=True)
class FormField:
    """How the trigger form shows one Param: its title and one line of description (None: the
    config field's own description)."""

    title: str
    description: str | None = None


_PARTIAL = "JSON; give only the keys to change"

#: ``{section: {request field: FormField}}``, in the order the trigger form shows them.
FORM: dict[str, dict[str, FormField]] = {
    RUN_PARAMETERS: {
        "partition_date": FormField(
            "Date", "The date to process, YYYY-MM-DD (scheduled runs: the day before the interval)"
        ),
        "partition_dates": FormField(
            "Several dates",
            "Several dates, one cluster; each is listed, run and published on its own",
        ),
        "date_range": FormField(
            "Date range",
            'Every date from start to end, one cluster: {"start": "YYYY-MM-DD", "end": ...}',
        ),
        "republish": FormField("Redo published dates"),
        "dry_run": FormField("Plan only (dry run)"),
        "sample_limit": FormField("Only the first N images"),
    },
    "Input and output": {
        "input_uri": FormField("Input prefix"),
        "manifest_uri": FormField("Manifest"),
        "extensions": FormField("Image extensions"),
        "output_uri": FormField("Output prefix"),
        "staging_uri": FormField("Staging prefix"),
        "artifacts_uri": FormField("Job artifacts prefix"),
        "sse": FormField(
            "Encryption of what it writes",
            f'Server-side encryption ({_PARTIAL}): {{"mode": "none" | "AES256" | "aws:kms"}}',
        ),
    },
    "Model": {
        "model": FormField(
            "Model", f"The model's files in S3, input size and runtime ({_PARTIAL})"
        ),
        "precision": FormField(
            "Precision",
            "fp32, or int8: the model quantized once, used if it agrees enough with fp32",
        ),
        "int8": FormField(
            "int8 model", f"How the int8 model is made and checked against fp32 ({_PARTIAL})"
        ),
        "conversion": FormField(
            "Converted model",
            f"When a model converted for a runtime other than mxnet may be used ({_PARTIAL})",
        ),
        "batch_size": FormField("Batch size"),
        "top_k": FormField("Predictions per image"),
    },
    "Cluster": {
        "cluster": FormField(
            "EMR cluster",
            f'Shape and settings of the EMR cluster, emr backend ({_PARTIAL}: {{"core": '
            '{"count": 8}})',
        ),
        "local": FormField(
            "Local Spark cluster", f"The Spark standalone cluster, local backend ({_PARTIAL})"
        ),
    },
    ADVANCED: {
        "estimate": FormField(
            "Run plan's assumptions",
            f"What the run plan's time and cost (and the partition size) assume ({_PARTIAL})",
        ),
        "shard_size": FormField("Keys per manifest shard"),
        "partitions": FormField("Spark partitions"),
        "max_partition_keys": FormField(
            "Keys per partition at most",
            "More partitions if needed; empty: derived from the estimate and partition_seconds",
        ),
        "partition_seconds": FormField("Seconds per partition"),
        "max_error_rate": FormField("Error rate at most"),
        "prefetch_threads": FormField("Prefetch threads"),
        "prefetch_depth": FormField("Batches decoded ahead"),
        "omp_threads": FormField("Runtime threads per worker"),
        "engine": FormField(
            "Spark engine", "rdd (mapPartitions) or predict_batch_udf (needs pandas and pyarrow)"
        ),
    },
}


def form_annotations() -> dict[str, dict[str, str]]:
    """``{name: {"title", "description"[, "section"]}}`` of every request field, in form order.

    A field missing from :data:`FORM` goes last, into :data:`ADVANCED`, titled with its name
    (``test_params`` fails on it: every field must be placed by hand)."""
    descriptions = {
        name: field.description or "" for name, field in RequestDefaults.model_fields.items()
    }
    placed = {
        name: (section, form) for section, fields in FORM.items() for name, form in fields.items()
    }
    for name in descriptions:
        placed.setdefault(name, (ADVANCED, FormField(name)))
    order = {section: index for index, section in enumerate(FORM)}
    annotations = {}
    for name, (section, form) in sorted(placed.items(), key=lambda item: order[item[1][0]]):
        if name not in descriptions:
            continue  # a FORM entry for a field that no longer exists (test_params fails on it)
        annotation = {"title": form.title, "description": form.description or descriptions[name]}
        if section != RUN_PARAMETERS:
            annotation["section"] = section
        annotations[name] = annotation
    return annotations


def build_params(config: PipelineConfig) -> dict[str, Any]:
    """``{name: Param}`` for a DAG, in the trigger form's order: pipeline values as defaults, the
    models' rules as schema, plus the form's title, description and section."""
    from airflow.sdk import Param

    defaults, schemas = config.request_defaults(), param_schemas()
    return {
        name: Param(defaults[name], **{**schemas[name], **annotation})
        for name, annotation in form_annotations().items()
    }
