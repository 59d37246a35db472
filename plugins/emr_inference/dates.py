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
except the run: the job's settings that shape the rows (model, preprocessing, top-k, precision,
encryption: :data:`ROW_SETTINGS`), the date's output, what was listed (the keys in order, or
a supplied manifest's document) and the bytes behind it (:func:`content_identity`: the listed
objects' sizes and ETags, the model files' checksums).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from batch_inference.contract.settings import CONFIG, fingerprinted
from batch_inference.contract.settings import ROW_SETTINGS as CONTRACT_ROW_SETTINGS

from emr_inference import s3
from emr_inference.manifest import (
    Listing,
    count_keys,
    matching_keys,
    validate_manifest,
    write_manifest,
)
from emr_inference.ownership import SUCCESS_NAME, read_summary
from emr_inference.resolved import ResolvedRequest
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

PENDING, EMPTY, PUBLISHED = "pending", "empty", "published"


#: The config settings the rows depend on (the contract's ``ROW_SETTINGS`` that a pipeline sets:
#: the model and its preprocessing, top-k, precision and the int8 gate, the encryption). Not how
#: the work is split and run: changing those does not make a published date pending again.
ROW_SETTINGS = tuple(setting for setting in CONTRACT_ROW_SETTINGS if setting.source == CONFIG)


def request_fingerprint(
    request: ResolvedRequest, keys_sha256: str | None, content: Mapping[str, Any] | None = None
) -> str:
    """Hex SHA-256 of the date's :data:`ROW_SETTINGS`, its output, its listed keys and
    ``content``: what identifies the bytes the rows are computed from (:func:`content_identity`),
    so a fixed image or a model file replaced under the same name makes the date pending again."""
    values = request.as_json()
    settings = fingerprinted(ROW_SETTINGS, lambda setting: setting.read(values))
    document = {
        "job": settings,
        "keys_sha256": keys_sha256,
        "output_uri": request.output_uri.uri,
        **({"content": dict(content)} if content else {}),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def published_summary(hook: S3Hook, output: S3Uri) -> dict[str, Any] | None:
    """The ``_run_summary.json`` of the complete publication at ``output``, if there is one.

    None without ``_SUCCESS``, and without a summary beside it: another writer's output (a Spark
    job writes ``_SUCCESS`` too) is not a publication of this pipeline, and must not fail the
    listing of its date."""
    if not s3.exists(hook, output.join(SUCCESS_NAME)):
        return None
    return read_summary(hook, output)


def date_status(total: int, request: ResolvedRequest, published: Mapping[str, Any] | None) -> str:
    """``empty`` without keys; ``published`` when another run already published the date for
    the same request fingerprint (and the request does not ask to ``republish``); else
    ``pending``."""
    if total == 0:
        return EMPTY
    if (
        published
        and not request.republish
        and published.get("request_fingerprint") == request.request_fingerprint
        and published.get("run_id") != request.run_id
    ):
        return PUBLISHED
    return PENDING


def stage_date(
    hook: S3Hook,
    request: ResolvedRequest,
    *,
    write: bool = True,
    model: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One date's work item: ``{"request": <its JSON form, with its request_fingerprint>,
    "manifest": {"manifest_uri", "total", "shards", "bytes", "keys_sha256", "status"}}``.

    Lists the date's ``input_uri`` into its manifest (``write=False``: only counts, writes
    nothing, ``manifest_uri`` is empty: how ``make plan`` looks), or checks its supplied
    ``manifest_uri``; then gives the date its status.
    """
    listing = None
    if request.manifest_uri:
        info = validate_manifest(hook, request.manifest_uri.uri)
    else:
        assert request.input_uri is not None  # the request has one or the other
        listing = Listing()
        keys = matching_keys(
            hook, request.input_uri, request.extensions, request.sample_limit, listing
        )
        if write:
            info = write_manifest(
                hook, request.input_uri, keys, request.manifest_prefix, request.shard_size
            )
        else:
            info = count_keys(keys)
        info = replace(info, bytes=listing.bytes)
    content = content_identity(hook, request, listing.content_sha256 if listing else None, model)
    fingerprint = request_fingerprint(request, info.keys_sha256, content)
    request = request.model_copy(update={"request_fingerprint": fingerprint})
    status = date_status(info.total, request, published_summary(hook, request.output_uri))
    return {"request": request.as_json(), "manifest": {**info.as_xcom(), "status": status}}


def model_identity(hook: S3Hook, request: ResolvedRequest) -> dict[str, str]:
    """What identifies the model's bytes: each file's ``sha256`` when the pipeline pins it, else
    its size and ETag (one HeadObject each). The same for every date of a run: compute it once."""
    model: dict[str, str] = {}
    for part, named in request.model.files().items():
        pinned = getattr(request.model, f"{part}_sha256")
        if pinned:
            model[part] = f"sha256:{pinned}"
            continue
        uri = S3Uri.parse(named, f"model.{part}")
        head = hook.head_object(key=uri.key, bucket_name=uri.bucket) or {}
        model[part] = f"{head.get('ContentLength')}:{head.get('ETag')}"
    return model


def content_identity(
    hook: S3Hook,
    request: ResolvedRequest,
    inputs_sha256: str | None,
    model: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What identifies the bytes a date's rows come from: the listed inputs' keys, sizes and ETags
    (``inputs_sha256``: None for a supplied manifest, whose objects are not listed), and the
    model's (``model``, the run's :func:`model_identity`, read here when not given)."""
    return {
        "inputs_sha256": inputs_sha256,
        "model": dict(model) if model is not None else model_identity(hook, request),
    }


def dates_by_status(works: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{status: [date, ...]}`` of ``stage_manifest``'s per-date XComs, every status present."""
    grouped: dict[str, list[str]] = {PENDING: [], EMPTY: [], PUBLISHED: []}
    for work in works:
        grouped[work["manifest"]["status"]].append(work["request"]["partition_date"])
    return grouped


def skip_unless_pending(request: ResolvedRequest, manifest: Mapping[str, Any]) -> None:
    """Skip the task (and, through the trigger rules, the rest of its date) unless the date
    needs a step: an empty date or one already published does not."""
    from airflow.sdk.exceptions import AirflowSkipException

    status = manifest.get("status", PENDING)
    if status != PENDING:
        raise AirflowSkipException(f"{request.partition_date} is {status}: no step needed")


def step_timeout(timeout: float, request: ResolvedRequest) -> float:
    """A date's wait timeout: ``timeout`` per date of the run, since a cluster runs its steps
    one after another and the last date's step may wait for all the others. A step that runs
    is bounded by ``timeout`` from its own start (:func:`step_overrun`), so this only bounds the
    queueing."""
    return timeout * request.run_dates


def step_overrun(step_id: str, running_seconds: float | None, timeout: float) -> str | None:
    """Why a step that has been running for ``running_seconds`` (None: not started) must be
    stopped: more than ``timeout`` (``step_timeout_seconds``) since its own start; else None.

    EMR runs a cluster's steps one at a time and its idle timeout does not fire while a step
    runs, so a stuck step would hold the cluster (and the dates queued behind it) until the
    sensor's whole-range timeout; bounded from its own start it holds it one timeout at most.
    """
    if running_seconds is None or running_seconds <= timeout:
        return None
    return (
        f"Step {step_id} has been running for {running_seconds:.0f} s, more than "
        f"step_timeout_seconds ({timeout:.0f} s) from its own start: stopped as stuck"
    )
