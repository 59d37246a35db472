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
"""

from __future__ import annotations

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


def build_params(config: PipelineConfig) -> dict[str, Any]:
    """``{name: Param}`` for a DAG: pipeline values as defaults, the models' rules as schema."""
    from airflow.sdk import Param

    defaults = config.request_defaults()
    return {name: Param(defaults[name], **schema) for name, schema in param_schemas().items()}
