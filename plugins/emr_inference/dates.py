"""The dates of a run: each one's status before any cluster, and its request fingerprint.

A run names one date (scheduled runs, most manual ones) or several (``partition_dates``,
``date_range``); every date is listed, run and published on its own, on the run's one cluster.
``stage_manifest`` gives each date a status:

* ``pending``: keys to process; the date gets a step and a publication;
* ``empty``: nothing matched its input; skipped and reported;
* ``published``: its ``output_uri`` already holds a complete publication (``_SUCCESS``) of the
  same request fingerprint by another DAG run, so re-running a range redoes only the dates not
  yet published. Clearing a run redoes its own dates; ``republish: true`` redoes them all.

The request fingerprint (:func:`request_fingerprint`) covers what the published rows depend on,
except the run: the job's settings that the pipeline config gives (model, preprocessing, top-k,
precision, encryption, ...; :data:`batch_inference.contract.settings.SETTINGS`), the date's
output and what was listed (the keys in order, or a supplied manifest's document).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from batch_inference.contract.settings import CONFIG, SETTINGS

from emr_inference import s3
from emr_inference.manifest import (
    Listing,
    count_keys,
    matching_keys,
    validate_manifest,
    write_manifest,
)
from emr_inference.request import manifest_prefix
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

PENDING, EMPTY, PUBLISHED = "pending", "empty", "published"


def request_fingerprint(request: Mapping[str, Any], keys_sha256: str | None) -> str:
    """Hex SHA-256 of the date's job settings (every contract setting the config gives: model,
    preprocessing, top-k, precision, encryption, ...), its output and its listed keys."""
    settings = {s.name: s.read(request) for s in SETTINGS if s.source == CONFIG}
    document = {"job": settings, "keys_sha256": keys_sha256, "output_uri": request["output_uri"]}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def published_summary(hook: S3Hook, output_uri: str) -> dict[str, Any] | None:
    """The ``_run_summary.json`` of the complete publication at ``output_uri``, if there is one.

    None without ``_SUCCESS``, and without a summary beside it: another writer's output (a Spark
    job writes ``_SUCCESS`` too) is not a publication of this pipeline, and must not fail the
    listing of its date."""
    from emr_inference.publish import SUCCESS_NAME, SUMMARY_NAME

    output = S3Uri.parse(output_uri, "output_uri", prefix=True)
    summary_uri = output.join(SUMMARY_NAME)
    if not s3.exists(hook, output.join(SUCCESS_NAME)) or not s3.exists(hook, summary_uri):
        return None
    try:
        summary = s3.read_json(hook, summary_uri)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def date_status(total: int, request: Mapping[str, Any], published: Mapping[str, Any] | None) -> str:
    """``empty`` without keys; ``published`` when another run already published the date for
    the same request fingerprint (and the request does not ask to ``republish``); else
    ``pending``."""
    if total == 0:
        return EMPTY
    if (
        published
        and not request.get("republish")
        and published.get("request_fingerprint") == request["request_fingerprint"]
        and published.get("run_id") != request["run_id"]
    ):
        return PUBLISHED
    return PENDING


def stage_date(hook: S3Hook, request: Mapping[str, Any], *, write: bool = True) -> dict[str, Any]:
    """One date's work item: ``{"request": <with its request_fingerprint>, "manifest":
    {"manifest_uri", "total", "shards", "bytes", "keys_sha256", "status"}}``.

    Lists the date's ``input_uri`` into its manifest (``write=False``: only counts, writes
    nothing, ``manifest_uri`` is empty: how ``make plan`` looks), or checks its supplied
    ``manifest_uri``; then gives the date its status.
    """
    if request.get("manifest_uri"):
        info = validate_manifest(hook, request["manifest_uri"])
    else:
        source = S3Uri.parse(request["input_uri"], "input_uri", prefix=True)
        listing = Listing()
        extensions, limit = request.get("extensions") or [], request.get("sample_limit")
        keys = matching_keys(hook, source, extensions, limit, listing)
        if write:
            dest = S3Uri.parse(manifest_prefix(request), "staging_uri", prefix=True)
            info = write_manifest(hook, source, keys, dest, request["shard_size"])
        else:
            info = count_keys(keys)
        info = replace(info, bytes=listing.bytes)
    request = {**request, "request_fingerprint": request_fingerprint(request, info.keys_sha256)}
    status = date_status(info.total, request, published_summary(hook, request["output_uri"]))
    return {"request": request, "manifest": {**info.as_xcom(), "status": status}}


def dates_by_status(works: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{status: [date, ...]}`` of ``stage_manifest``'s per-date XComs, every status present."""
    grouped: dict[str, list[str]] = {PENDING: [], EMPTY: [], PUBLISHED: []}
    for work in works:
        grouped[work["manifest"]["status"]].append(work["request"]["partition_date"])
    return grouped


def skip_unless_pending(request: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Skip the task (and, through the trigger rules, the rest of its date) unless the date
    needs a step: an empty date or one already published does not."""
    from airflow.sdk.exceptions import AirflowSkipException

    status = manifest.get("status", PENDING)
    if status != PENDING:
        raise AirflowSkipException(f"{request['partition_date']} is {status}: no step needed")


def step_timeout(timeout: float, request: Mapping[str, Any]) -> float:
    """A date's wait timeout: ``timeout`` per date of the run, since a cluster runs its steps
    one after another and the last date's step may wait for all the others."""
    return timeout * max(1, int(request.get("dates_in_run") or 1))
