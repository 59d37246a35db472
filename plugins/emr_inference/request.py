"""Resolve a run's Params + the pipeline config + the run's dates into the "resolved request".

The resolved request (see docs/CONTRACTS.md) is the one dict every later task reads. Resolution:

1. Params over 64 KiB of JSON are refused, naming the largest (Airflow stores any ``conf``).
   A Param that is not a request field (a typo: ``{"batchsize": 8}``) is refused, naming the
   closest field. Airflow 3.3 does not check unknown ``conf`` keys at trigger time (it adds them
   as Params without a schema), so this is the first thing ``validate_request`` does.
2. Params are merged over the pipeline's values; objects (``model``, ``sse``, ``cluster``,
   ``local``) merge key by key at every depth, so ``{"cluster": {"core": {"market": "SPOT"}}}``
   changes one field; lists and other values replace.
3. The merged values are validated with the same pydantic models as the YAML file; errors name the
   dotted field (``cluster.core.market``), and an unknown nested key names the closest valid one.
4. The run's dates: ``partition_date``, ``partition_dates`` and ``date_range`` together (sorted,
   distinct, at most the pipeline's ``max_range_dates``); without any, the day before the data
   interval end (a nightly run processes the previous day), else a date must be given.
5. Per date, URI templates (``{{ partition_date }}``, ``{{ partition_date_nodash }}``,
   ``{{ pipeline }}``, ``{{ dag_id }}``) are rendered, then every URI is strictly validated; two
   dates may not publish to the same ``output_uri``, and no output, input, staging or artifacts
   prefix of any date may overlap another (:func:`emr_inference.ownership.check_disjoint_prefixes`).
6. Per date, ``staging_uri`` becomes ``<staging root><pipeline>/<run key>/<date>/`` and
   ``artifacts_uri`` ``<artifacts root><pipeline>/``; both roots default to the output bucket.

The result is a :class:`~emr_inference.resolved.ResolvedRequest`: every date under ``dates``
(the fields that differ per date) and the first date's fields at the top level, so a one-date
run's request reads as it always has; ``request.for_date(date)`` gives any date's request.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from emr_inference.backends import backend_named
from emr_inference.config import (
    ConfigError,
    PipelineConfig,
    RequestDefaults,
    format_errors,
)
from emr_inference.ownership import OwnershipError, check_disjoint_prefixes
from emr_inference.resolved import ResolvedRequest

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


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'batch_size'?"`` for the choice most similar to ``name`` when one is
    close (difflib's ratio >= 0.6: a typo), else ``""``: a hint that is always given misleads."""
    matches = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


#: The most a run's Params may weigh, as JSON (the pipeline's defaults are a few KiB). Airflow
#: stores a run's ``conf`` whatever its size before any task runs; per-field limits (the Params'
#: maxLength and maxItems) refuse oversize known fields at trigger time, this bounds the rest.
MAX_PARAMS_BYTES = 64 * 1024


def check_size(params: Mapping[str, Any]) -> None:
    """Refuse Params over ``MAX_PARAMS_BYTES`` of JSON, naming the largest ones."""
    sizes = {name: len(json.dumps(value, default=str)) for name, value in params.items()}
    total = len(json.dumps(dict(params), default=str))
    if total <= MAX_PARAMS_BYTES:
        return
    largest = sorted(sizes, key=lambda name: (-sizes[name], name))[:3]
    named = ", ".join(f"{name} ({sizes[name]} bytes)" for name in largest)
    raise ConfigError(
        f"params: {total} bytes of JSON, more than the {MAX_PARAMS_BYTES} a run accepts "
        f"(largest: {named})"
    )


def check_fields(params: Mapping[str, Any]) -> None:
    """Refuse a Param that is not a request field: a DAG setting (not overridable per run), or
    an unknown key, named with the closest field when one is close."""
    known = set(RequestDefaults.model_fields)
    lines = []
    for name in sorted(set(params) - known):
        if name in PipelineConfig.model_fields:
            lines.append(f"params: {name}: a DAG setting: set it in the pipeline file, not per run")
        else:
            lines.append(f"params: {name}: not a request field{did_you_mean(name, known)}")
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
            lines[index] += did_you_mean(str(item["loc"][-1]), fields)
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
    partition_key: str | None = None,
) -> ResolvedRequest:
    """Build the resolved request of docs/CONTRACTS.md; raises ConfigError naming a field.

    ``partition_key`` (a partitioned run's, ``YYYY-MM-DD``) is the date when the Params name none.
    """
    from emr_inference.s3 import S3Uri, S3UriError

    check_size(params)
    check_fields(params)
    merged = merge_params(config.request_defaults(), params)
    try:
        defaults = RequestDefaults.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_validation_errors(error)) from None
    backend_named(config.backend).check_request(defaults, "params")
    values = defaults.model_dump(mode="json")

    days = run_dates(defaults, data_interval_end, config.max_range_dates, partition_key)
    model = defaults.model
    model_files = {f"model.{part}": uri for part, uri in model.files().items()}
    try:
        dates = [_date_fields(values, day, config.pipeline, dag_id, run_id) for day in days]
        for name, uri in model_files.items():
            S3Uri.parse(uri, name, prefix=False)
        if defaults.cluster.log_uri:
            S3Uri.parse(defaults.cluster.log_uri, "cluster.log_uri")
    except S3UriError as error:
        raise ConfigError(f"params: {error}") from None
    _check_distinct_outputs(dates)
    try:
        check_disjoint_prefixes(dates, model_files)
    except OwnershipError as error:
        raise ConfigError(f"params: {error}") from None
    return ResolvedRequest.model_validate(
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "pipeline": config.pipeline,
            "backend": config.backend,
            **values,
            **dates[0],
            "partition_dates": [entry["partition_date"] for entry in dates],
            "dates": dates,
        }
    )


def run_dates(
    values: RequestDefaults,
    data_interval_end: dt.datetime | None,
    max_dates: int,
    partition_key: str | None = None,
) -> list[str]:
    """The sorted, distinct dates a run processes: ``partition_date``, ``partition_dates`` and
    ``date_range`` together; without any, the run's ``partition_key``, else the day before the
    data interval end."""
    days = set(values.partition_dates or [])
    if values.partition_date:
        days.add(values.partition_date)
    if span := values.date_range:
        first, last = dt.date.fromisoformat(span.start), dt.date.fromisoformat(span.end)
        if (last - first).days >= max_dates:
            raise ConfigError(
                f"params: date_range: {span.start}..{span.end} is "
                f"{(last - first).days + 1} dates, more than max_range_dates {max_dates}"
            )
        days.update(
            (first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)
        )
    if not days and partition_key:
        days.add(_key_date(partition_key))
    if not days and (default := default_partition_date(data_interval_end)):
        days.add(default)
    if not days:
        raise ConfigError("params: partition_date: required for a run without a data interval")
    if len(days) > max_dates:
        raise ConfigError(
            f"params: partition_dates: {len(days)} dates with date_range and partition_date, "
            f"more than max_range_dates {max_dates}"
        )
    return sorted(days)


def _key_date(partition_key: str) -> str:
    """A partition key as a date, or a ConfigError naming it."""
    try:
        return dt.date.fromisoformat(partition_key).isoformat()
    except ValueError:
        raise ConfigError(f"partition_key: {partition_key!r} is not a date (YYYY-MM-DD)") from None


def _date_fields(
    values: Mapping[str, Any], day: str, pipeline: str, dag_id: str, run_id: str
) -> dict[str, Any]:
    """The request fields that differ per date: the templates rendered for ``day``, parsed."""
    from emr_inference.s3 import S3Uri

    date = dt.date.fromisoformat(day)
    variables = {
        "partition_date": date.isoformat(),
        "partition_date_nodash": date.strftime("%Y%m%d"),
        "pipeline": pipeline,
        "dag_id": dag_id,
    }
    rendered = {
        field: _render(values[field], variables, field) if values[field] else None
        for field in _TEMPLATED_FIELDS
    }
    if rendered["manifest_uri"]:
        rendered["input_uri"] = None  # a ready manifest takes precedence over listing a prefix
        S3Uri.parse(rendered["manifest_uri"], "manifest_uri", prefix=False)
    else:
        input_uri = rendered["input_uri"]
        assert input_uri is not None  # RequestDefaults requires input_uri or manifest_uri
        rendered["input_uri"] = S3Uri.parse(_as_prefix(input_uri), "input_uri", prefix=True).uri
    output_uri = rendered["output_uri"]
    assert output_uri is not None  # a required field
    output = S3Uri.parse(_as_prefix(output_uri), "output_uri", prefix=True)
    staging_root = rendered["staging_uri"] or f"s3://{output.bucket}/_staging/"
    staging = S3Uri.parse(_as_prefix(staging_root), "staging_uri", prefix=True)
    artifacts_root = rendered["artifacts_uri"] or f"s3://{output.bucket}/artifacts/"
    artifacts = S3Uri.parse(_as_prefix(artifacts_root), "artifacts_uri", prefix=True)
    return {
        "partition_date": date.isoformat(),
        "input_uri": rendered["input_uri"],
        "manifest_uri": rendered["manifest_uri"],
        "output_uri": output.uri,
        "staging_uri": staging.join(pipeline, run_key(run_id), date.isoformat()).uri + "/",
        "artifacts_uri": artifacts.join(pipeline).uri + "/",
    }


def _check_distinct_outputs(dates: list[dict[str, Any]]) -> None:
    """Refuse a range whose dates would publish to the same prefix (each would replace the
    other's publication)."""
    seen: dict[str, str] = {}
    for entry in dates:
        if (other := seen.setdefault(entry["output_uri"], entry["partition_date"])) != entry[
            "partition_date"
        ]:
            raise ConfigError(
                f"params: output_uri: {other} and {entry['partition_date']} would both publish "
                f"to {entry['output_uri']}; use {{{{ partition_date }}}} in output_uri for a run "
                "of several dates"
            )


def _as_prefix(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"
