"""A loopback S3 proxy that, while armed, holds chosen requests unanswered: a task frozen in the
middle of a multi-request operation (e.g. ``publish_results`` between two copies), at a known
point, so a test can kill it there.

It is ``bench.latency_proxy.LatencyProxy`` with no added latency; a held request is read, then
waits until :meth:`HoldProxy.release`, and its connection is closed without an answer (nothing
reaches moto). Requests that do not match, or arrive while disarmed, are forwarded.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

from bench.latency_proxy import LatencyProxy, _ProxyHandler


class _HoldRule:
    def __init__(self, method: str, path_contains: str) -> None:
        self.method = method
        self.path_contains = path_contains
        self.armed = threading.Event()
        self.held = threading.Event()
        self.released = threading.Event()

    def matches(self, method: str, path: str) -> bool:
        return (
            self.armed.is_set()
            and method == self.method
            and self.path_contains in unquote(urlsplit(path).path)
        )


class _HoldHandler(_ProxyHandler):
    def _forward(self) -> None:
        rule: _HoldRule = self.server.hold  # type: ignore[attr-defined]
        if not rule.matches(self.command, self.path):
            super()._forward()
            return
        self._read_body()
        rule.held.set()
        rule.released.wait()
        self.close_connection = True  # no answer: the client sees the connection close

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class HoldProxy(LatencyProxy):
    """Proxy on 127.0.0.1 in front of ``upstream_url``; holds ``method`` requests whose path
    contains ``path_contains`` between :meth:`arm` and :meth:`release`."""

    def __init__(self, upstream_url: str, method: str, path_contains: str) -> None:
        super().__init__(upstream_url, latency=0.0, max_lifetime=3600.0)
        self._server.RequestHandlerClass = _HoldHandler
        self.rule = _HoldRule(method, path_contains)
        self._server.hold = self.rule  # type: ignore[attr-defined]

    def arm(self) -> None:
        """Hold matching requests from now on."""
        self.rule.released.clear()
        self.rule.held.clear()
        self.rule.armed.set()

    def wait_until_held(self, timeout: float) -> bool:
        """Whether a matching request arrived (and is being held) within ``timeout`` seconds."""
        return self.rule.held.wait(timeout)

    def release(self) -> None:
        """Stop holding: drop the held requests unanswered, forward everything from now on."""
        self.rule.armed.clear()
        self.rule.released.set()
