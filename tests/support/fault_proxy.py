"""A loopback S3 proxy that answers chosen requests with S3's throttling and server errors.

It is ``bench.latency_proxy.LatencyProxy`` (threaded, bounded, keep-alive, self-expiring) with no
added latency and a handler that, before forwarding, asks a :class:`FaultPlan` whether this request
must fail. The plan is deterministic and bounded: per rule, the first ``failures`` requests to each
object (same method and path) fail, alternating ``503 SlowDown`` and ``500 InternalError``; the
following ones reach moto. ``failures`` at or above the client's attempt budget makes every attempt
fail (retries exhausted).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.latency_proxy import LatencyProxy, _ProxyHandler

# (HTTP status, S3 error code, message), used in turn for a given object's failed requests.
ERRORS = (
    (503, "SlowDown", "Please reduce your request rate."),
    (500, "InternalError", "We encountered an internal error. Please try again."),
)


@dataclass(frozen=True)
class FaultRule:
    """Fail the first ``failures`` ``method`` requests to each object whose path contains
    ``path_contains`` (e.g. ``"/images/"``)."""

    method: str
    path_contains: str
    failures: int


class FaultPlan:
    """Decides, thread-safely, which requests fail; counts what it injected."""

    def __init__(self, rules: list[FaultRule]) -> None:
        self.rules = rules
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        #: injected errors by S3 error code
        self.injected: Counter[str] = Counter()
        #: objects (``METHOD /bucket/key``) that got at least one injected error
        self.objects: set[str] = set()

    def error_for(self, method: str, path: str) -> tuple[int, str, str] | None:
        """The error to answer with, or ``None`` to forward the request."""
        path = urlsplit(path).path
        for rule in self.rules:
            if rule.method == method and rule.path_contains in path:
                with self._lock:
                    seen = self._seen[(method, path)]
                    self._seen[(method, path)] += 1
                    if seen >= rule.failures:
                        return None
                    error = ERRORS[seen % len(ERRORS)]
                    self.injected[error[1]] += 1
                    self.objects.add(f"{method} {path}")
                return error
        return None


class _FaultHandler(_ProxyHandler):
    """Answers with the plan's error when it has one, else forwards like the latency proxy."""

    def _forward(self) -> None:
        error = self.server.plan.error_for(self.command, self.path)
        if error is None:
            super()._forward()
            return
        self._read_body()  # keep the kept-alive connection in sync
        status, code, message = error
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class FaultProxy(LatencyProxy):
    """Proxy on 127.0.0.1 in front of ``upstream_url`` that injects the errors of ``plan``."""

    def __init__(self, upstream_url: str, plan: FaultPlan) -> None:
        super().__init__(upstream_url, latency=0.0, max_lifetime=900.0)
        self._server.RequestHandlerClass = _FaultHandler
        self._server.plan = plan  # type: ignore[attr-defined]
        self.plan = plan
