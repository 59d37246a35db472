"""AWS Lambda handler of the online predictor (:mod:`batch_inference.online`).

``batch_inference.lambda_handler.handler`` accepts:

* an API Gateway proxy event (REST or HTTP API): the image bytes as the body (base64, as API
  Gateway passes a binary media type), or a JSON body ``{"s3_uri": "s3://bucket/key"}``. It
  answers the row as JSON: 200 for a prediction, the error row with 404 (``missing_object``),
  422 (an image that cannot be decoded) or 502 (``download_failed``), and
  ``{"error": {"type": "bad_request", "message": ...}}`` with 400 for a request it cannot read.
  A model that cannot be loaded is a 500 with ``{"error": {"type": "model_unavailable", ...}}``;
* an S3 event: the row of every ``ObjectCreated:*`` record's object, as ``{"rows": [...],
  "ignored": [...]}`` (other records, ``ObjectRemoved:*`` for one, are listed as ignored; S3
  invokes asynchronously: give the function an on-success destination to keep them). A model
  that cannot be loaded raises, so that Lambda retries and then uses the on-failure destination.

Lambda refuses a synchronous request over 6 MB before this handler runs (the caller gets API
Gateway's error, not a row): an image body, base64-encoded, must be under about 4.5 MB; name
larger images by ``s3_uri``.

The model is configured by environment variables named after the CLI's flags (``MODEL_NAME``,
``MODEL_SYMBOL``, ``MODEL_PARAMS``, ``MODEL_LABELS``, ``MODEL_*_SHA256``, ``IMAGE_SIZE``, ``MEAN``,
``STD``, ``SCALE``, ``INPUT_NAME``, ``TOP_K``, ``BATCH_SIZE``, ``RUN_ID``) and loaded once per
container, on its first invocation.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from typing import Any
from urllib.parse import unquote_plus

from batch_inference.errors import DOWNLOAD_FAILED, MISSING_OBJECT, ModelLoadError
from batch_inference.online import Predictor, settings_from_env
from batch_inference.s3io import parse_s3_uri

log = logging.getLogger(__name__)

_PREDICTOR: Predictor | None = None
#: status of an error row, by error type (any other type: the image cannot be decoded)
ERROR_STATUS = {MISSING_OBJECT: 404, DOWNLOAD_FAILED: 502}
USAGE = (
    'send the image bytes base64-encoded, or a JSON body {"s3_uri": "s3://bucket/key"} '
    "(Content-Type: application/json)"
)


class BadRequest(ValueError):
    """A request the handler cannot read (answered with 400)."""


def predictor() -> Predictor:
    """This container's predictor, made from the environment on first use."""
    global _PREDICTOR
    if _PREDICTOR is None:
        _PREDICTOR = Predictor(settings_from_env(os.environ))
    return _PREDICTOR


def response(status: int, body: dict) -> dict:
    """An API Gateway proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def failure(status: int, kind: str, message: str) -> dict:
    """A JSON error response: ``{"error": {"type": kind, "message": message}}``."""
    return response(status, {"error": {"type": kind, "message": message}})


def record_uri(record: dict) -> str:
    """The ``s3://`` URI of an S3 event record's object (keys arrive URL-encoded)."""
    return f"s3://{record['s3']['bucket']['name']}/{unquote_plus(record['s3']['object']['key'])}"


def handle_s3_event(event: dict) -> dict:
    """``{"rows": [...], "ignored": [...]}``: the row of each created object, in record order;
    records of other events (``ObjectRemoved:*``, ...: no image to read) are listed as ignored."""
    rows, ignored = [], []
    for record in event["Records"]:
        name = str(record.get("eventName", ""))
        if name.startswith("ObjectCreated:"):
            rows.append(predictor().predict_uri(record_uri(record)))
        else:
            log.info("ignoring %s of %s: not an object creation", name, record_uri(record))
            ignored.append({"key": record_uri(record), "event": name})
    return {"rows": rows, "ignored": ignored}


def is_s3_event(event: Any) -> bool:
    """True for an S3 notification event."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        return False
    return all(
        isinstance(record, dict) and record.get("eventSource") == "aws:s3" for record in records
    )


def is_api_event(event: Any) -> bool:
    """True for an API Gateway proxy event: REST API v1 (``httpMethod``) or HTTP API v2
    (``routeKey``; a request without a body has no ``body`` key at all)."""
    return (
        isinstance(event, dict)
        and "requestContext" in event
        and any(key in event for key in ("httpMethod", "routeKey", "body"))
    )


def read_api_request(event: dict) -> tuple[str, bytes | None]:
    """``(key, image bytes)`` of an API request, or ``(s3 uri, None)`` for a JSON body naming
    one; :class:`BadRequest` saying what is wrong."""
    body = event.get("body")
    if not body:
        raise BadRequest(f"the request has no body: {USAGE}")
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"the body is not valid base64: {exc}") from None
    else:
        data = body.encode("utf-8")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    # media types are case-insensitive (RFC 9110): Application/JSON is JSON
    is_json = headers.get("content-type", "").strip().lower().startswith("application/json")
    if not is_json and not data.lstrip().startswith(b"{"):
        if not event.get("isBase64Encoded"):
            raise BadRequest(f"the body is text, not an image: {USAGE}")
        request = event.get("requestContext") or {}
        return f"request:{request.get('requestId', 'unknown')}", data
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    uri = document.get("s3_uri") if isinstance(document, dict) else None
    if not isinstance(uri, str):
        raise BadRequest(f'the JSON body has no "s3_uri" string: {USAGE}')
    try:
        target = parse_s3_uri(uri, "s3_uri")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not target.key or target.key.endswith("/"):
        raise BadRequest(f"s3_uri must name an object, got {uri!r}")
    return f"s3://{target.bucket}/{target.key}", None


def handle_api(event: dict) -> dict:
    """The response to an API Gateway proxy event."""
    try:
        key, data = read_api_request(event)
    except BadRequest as exc:
        return failure(400, "bad_request", str(exc))
    try:
        served = predictor()
        row = served.predict_uri(key) if data is None else served.predict_bytes(key, data)
    except (ModelLoadError, ValueError) as exc:  # ValueError: the environment's settings
        log.error("the model could not be loaded: %s", exc)
        return failure(500, "model_unavailable", f"the model could not be loaded: {exc}")
    if row["error"] is None:
        return response(200, row)
    return response(ERROR_STATUS.get(row["error"]["type"], 422), row)


def handler(event: Any, context: Any = None) -> dict:
    """The Lambda entry point (``batch_inference.lambda_handler.handler``)."""
    if is_s3_event(event):
        return handle_s3_event(event)
    if not is_api_event(event):
        return failure(400, "bad_request", "not an API Gateway proxy event or an S3 event")
    try:
        return handle_api(event)
    except Exception as exc:  # never a crash for a caller: a 500 with the cause, and the trace
        log.exception("unexpected error")
        return failure(500, "internal_error", f"{type(exc).__name__}: {exc}")
