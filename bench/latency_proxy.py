"""A loopback HTTP reverse proxy that adds a fixed latency to every request.

The benchmarks put it in front of moto's S3 server so that the job sees something closer to real S3
(tens of milliseconds per GET) instead of a sub-millisecond loopback call: that is the latency the
job's prefetch must hide. Clients are pointed at :attr:`LatencyProxy.endpoint_url` through
``AWS_ENDPOINT_URL_S3``.

* threaded: one worker thread per client connection, HTTP/1.1 keep-alive both ways;
* bounded: at most ``max_connections`` connections are served at once (more wait in the listen
  backlog), idle keep-alive connections are closed after ``idle_timeout`` seconds;
* stops by itself: the server shuts down after ``max_lifetime`` seconds even if nobody calls
  :meth:`LatencyProxy.stop`, so a crashed benchmark leaves no listener behind (it runs in daemon
  threads of the benchmark process, which end with it anyway);
* optionally answers some GETs itself: ``serve`` maps a request path to an object's bytes (or
  ``None`` to forward it), so a scale run can read a million keys that the emulator never stores
  (:mod:`bench.scale`).
"""

from __future__ import annotations

import http.client
import logging
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Headers that describe one hop, not the message (RFC 9110 7.6.1); never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards each request to the upstream after sleeping ``server.latency`` seconds."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def setup(self) -> None:
        # typeshed declares timeout a ClassVar; StreamRequestHandler.setup reads it per instance
        self.timeout = self.server.idle_timeout  # type: ignore[misc]
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        log.debug("proxy: " + format, *args)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        body = self._read_body()
        time.sleep(self.server.latency)
        local = (
            self.server.serve(self.path) if self.command == "GET" and self.server.serve else None
        )
        if local is not None:
            self.server.count_request()
            self.send_response_only(200, "OK")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(local)))
            self.end_headers()
            self.wfile.write(local)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            response = self._send_upstream(body, headers)
        except OSError as exc:
            log.warning("proxy: upstream %s failed: %s", self.server.upstream, exc)
            self.send_error(502, f"upstream unreachable: {exc}")
            return
        payload = response.read()
        self.server.count_request()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        # A HEAD response announces the object's length but carries no body.
        length = response.getheader("Content-Length") if self.command == "HEAD" else len(payload)
        self.send_header("Content-Length", str(length or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_upstream(self, body: bytes | None, headers: dict[str, str]):
        """Send on this connection's kept-alive upstream connection; reconnect once if it died."""
        for attempt in (1, 2):
            if self._upstream is None:
                host, port = self.server.upstream
                self._upstream = http.client.HTTPConnection(host, port, timeout=60)
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                return self._upstream.getresponse()
            except (http.client.HTTPException, ConnectionError):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class _ProxyServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        upstream: tuple[str, int],
        latency: float,
        max_connections: int,
        idle_timeout: float,
        serve: Callable[[str], bytes | None] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.serve = upstream, serve
        self.latency = latency
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self.requests = 0

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def process_request(self, request, client_address) -> None:
        self._slots.acquire()  # bounded: the accept loop waits for a free slot
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LatencyProxy:
    """Reverse proxy on 127.0.0.1 in front of ``upstream_url`` adding ``latency`` s per request.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``serve(path)`` (e.g.
    ``"/bucket/key"``), if given, returns the bytes to answer a GET with instead of forwarding it,
    or ``None`` to forward it.
    """

    def __init__(
        self,
        upstream_url: str,
        latency: float = 0.020,
        max_connections: int = 128,
        idle_timeout: float = 5.0,
        max_lifetime: float = 3600.0,
        serve: Callable[[str], bytes | None] | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream_url must be http://host:port, got {upstream_url!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        upstream = (parts.hostname, parts.port)
        self._server = _ProxyServer(upstream, latency, max_connections, idle_timeout, serve)
        self._max_lifetime = max_lifetime
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def endpoint_url(self) -> str:
        """URL clients should use instead of the upstream's."""
        host, port = self._server.socket.getsockname()[:2]  # the bound address
        return f"http://{host}:{port}"

    @property
    def requests(self) -> int:
        """Requests forwarded so far."""
        return self._server.requests

    def start(self) -> LatencyProxy:
        """Serve in a daemon thread; shut down by itself after ``max_lifetime`` seconds."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="latency-proxy", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self._max_lifetime, self._expire)
        self._timer.daemon = True
        self._timer.start()
        log.info(
            "latency proxy %s -> %s:%d (+%.0f ms per request)",
            self.endpoint_url,
            *self._server.upstream,
            self._server.latency * 1000,
        )
        return self

    def _expire(self) -> None:
        log.warning("latency proxy reached its %.0f s lifetime; stopping", self._max_lifetime)
        self.stop()

    def stop(self) -> None:
        """Stop accepting connections and close the listening socket (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
