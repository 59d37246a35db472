"""Resolve a run's Params + the pipeline config + the run's dates into the "resolved request".

The resolved request (see docs/CONTRACTS.md) is the one dict every later task reads. Resolution:

1. A Param that is not a request field (a typo: ``{"batchsize": 8}``) is refused, naming the
   closest field. Airflow 3.3 does not check unknown ``conf`` keys at trigger time (it adds them
   as Params without a schema), so this is the first thing ``validate_request`` does.
2. Params are merged over the pipeline's values; objects (``model``, ``sse``, ``cluster``,
   ``local``) merge key by key at every depth, so ``{"cluster": {"core": {"market": "SPOT"}}}``
   changes one field; lists and other values replace.
3. The merged values are validated with the same pydantic models as the YAML file; errors name the
   dotted field (``cluster.core.market``), and an unknown nested key names the closest valid one.
4. ``partition_date`` defaults to the day before the data interval end (a nightly run processes
   the previous day), else it must be given.
5. URI templates (``{{ partition_date }}``, ``{{ partition_date_nodash }}``, ``{{ pipeline }}``,
   ``{{ dag_id }}``) are rendered, then every URI is strictly validated.
6. ``staging_uri`` becomes ``<staging root><pipeline>/<run key>/`` and ``artifacts_uri``
   ``<artifacts root><pipeline>/``; both roots default to the output bucket.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from emr_inference.config import (
    ConfigError,
    PipelineConfig,
    RequestDefaults,
    check_cluster_fits,
    format_errors,
)

_PREFIX_FIELDS = ("input_uri", "output_uri", "staging_uri", "artifacts_uri")
_TEMPLATED_FIELDS = (*_PREFIX_FIELDS, "manifest_uri")


def run_key(run_id: str) -> str:
    """A run id made safe for an S3 key segment (``manual__2026-01-01T00:00:00+00:00`` ->
    ``manual__2026-01-01T00-00-00-00-00``)."""
    return re.sub(r"[^A-Za-z0-9_.=-]", "-", run_id).strip(".") or "run"


def merge_params(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over ``defaults``: objects merge key by key at every depth, anything else
    (values, lists, an object over a non-object) replaces."""
    merged = dict(defaults)
    for name, value in params.items():
        default = defaults.get(name)
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            merged[name] = merge_params(default, value)
        else:
            merged[name] = value
    return merged


def closest(name: str, choices: Iterable[str]) -> str:
    """The choice most similar to ``name`` (difflib's ratio), for "did you mean" hints."""
    options = sorted(choices)
    return (difflib.get_close_matches(name, options, n=1, cutoff=0.0) or options)[0]


def check_fields(params: Mapping[str, Any]) -> None:
    """Refuse a Param that is not a request field: a DAG setting (not overridable per run), or
    an unknown key, named with the closest field."""
    known = set(RequestDefaults.model_fields)
    lines = []
    for name in sorted(set(params) - known):
        if name in PipelineConfig.model_fields:
            lines.append(f"params: {name}: a DAG setting: set it in the pipeline file, not per run")
        else:
            lines.append(
                f"params: {name}: not a request field; did you mean {closest(name, known)!r}?"
            )
    if lines:
        raise ConfigError("\n".join(lines))


def _model_fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the config model at ``loc`` below RequestDefaults ([] if none)."""
    model: Any = RequestDefaults
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def _validation_errors(error: ValidationError) -> str:
    """One line per error, ``params: <dotted.field>: <message>``, with a "did you mean" hint
    for an unknown nested key."""
    lines = format_errors(error, "params").splitlines()
    for index, item in enumerate(error.errors()):
        if item["type"] == "extra_forbidden" and (fields := _model_fields_at(item["loc"][:-1])):
            lines[index] += f"; did you mean {closest(str(item['loc'][-1]), fields)!r}?"
    return "\n".join(lines)


def default_partition_date(data_interval_end: dt.datetime | None) -> str | None:
    """The day before the data interval end (``YYYY-MM-DD``), or None without an interval."""
    if data_interval_end is None:
        return None
    return (data_interval_end - dt.timedelta(days=1)).date().isoformat()


def _render(template: str, variables: Mapping[str, str], field: str) -> str:
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return env.from_string(template).render(**variables)
    except TemplateError as error:
        known = ", ".join(sorted(variables))
        message = f"{field}: cannot render {template!r}: {error} (known: {known})"
        raise ConfigError(message) from None


def resolve_request(
    config: PipelineConfig,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
    data_interval_end: dt.datetime | None,
) -> dict[str, Any]:
    """Build the resolved request dict of docs/CONTRACTS.md; raises ConfigError naming a field."""
    from emr_inference.s3 import S3Uri, S3UriError

    check_fields(params)
    merged = merge_params(config.request_defaults(), params)
    try:
        values = RequestDefaults.model_validate(merged).model_dump(mode="json")
    except ValidationError as error:
        raise ConfigError(_validation_errors(error)) from None
    if config.backend == "emr":
        check_cluster_fits(values, "params")

    partition_date = values["partition_date"] or default_partition_date(data_interval_end)
    if partition_date is None:
        raise ConfigError("params: partition_date: required for a run without a data interval")
    day = dt.date.fromisoformat(partition_date)  # the model checked a given date

    variables = {
        "partition_date": day.isoformat(),
        "partition_date_nodash": day.strftime("%Y%m%d"),
        "pipeline": config.pipeline,
        "dag_id": dag_id,
    }
    for field in _TEMPLATED_FIELDS:
        if values[field]:
            values[field] = _render(values[field], variables, field)
    if values["manifest_uri"]:
        values["input_uri"] = None  # a ready manifest takes precedence over listing a prefix

    try:
        output = S3Uri.parse(_as_prefix(values["output_uri"]), "output_uri", prefix=True)
        staging_root = values["staging_uri"] or f"s3://{output.bucket}/_staging/"
        artifacts_root = values["artifacts_uri"] or f"s3://{output.bucket}/artifacts/"
        values["staging_uri"] = (
            S3Uri.parse(_as_prefix(staging_root), "staging_uri", prefix=True)
            .join(config.pipeline, run_key(run_id))
            .uri
            + "/"
        )
        values["artifacts_uri"] = (
            S3Uri.parse(_as_prefix(artifacts_root), "artifacts_uri", prefix=True)
            .join(config.pipeline)
            .uri
            + "/"
        )
        values["output_uri"] = output.uri
        if values["input_uri"]:
            values["input_uri"] = S3Uri.parse(
                _as_prefix(values["input_uri"]), "input_uri", prefix=True
            ).uri
        else:
            S3Uri.parse(values["manifest_uri"], "manifest_uri", prefix=False)
        for name in ("symbol", "params", "labels"):
            S3Uri.parse(values["model"][name], f"model.{name}", prefix=False)
        if values["cluster"]["log_uri"]:
            S3Uri.parse(values["cluster"]["log_uri"], "cluster.log_uri")
    except S3UriError as error:
        raise ConfigError(f"params: {error}") from None

    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "pipeline": config.pipeline,
        "backend": config.backend,
        **values,
        "partition_date": day.isoformat(),
    }


def _as_prefix(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def job_output_uri(request: Mapping[str, Any]) -> str:
    """Where the job writes this run's staged output (parts and ``_metrics/``)."""
    return request["staging_uri"] + "output/"


def manifest_prefix(request: Mapping[str, Any]) -> str:
    """Where ``stage_manifest`` writes this run's manifest.json and shards."""
    return request["staging_uri"] + "manifest/"
