"""An HTTP proxy on 127.0.0.1 that forwards to a real endpoint, except where a fault rule says.

Put it in front of the moto server (``AWS_ENDPOINT_URL`` = the proxy's URL) and boto3 talks
to the real server through it; a :class:`Fault` that matches a request answers it instead,
with an AWS-shaped error, so throttling and access denied reach botocore exactly as AWS
sends them (retries, error parsing and all)::

    with FaultProxy(server_url) as proxy:
        rule = proxy.add(Fault.s3("GET", r"[?&]list-type=2", 503, "SlowDown", times=2))
        ...
        assert rule.hits == 2

Rules are checked in the order added; the first that matches and has faults left answers.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fault", "FaultProxy", "Seen"]

#: Hop-by-hop headers (RFC 9110 7.6.1): never forwarded; the proxy frames bodies itself.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
    }
)
_CHUNK = 64 * 1024


@dataclass
class Fault:
    """Answer matching requests with ``status`` and an AWS error body, ``times`` times
    (None: always). ``path`` is a regex searched in the request target (path and query,
    as sent); ``target`` a regex matched in full against ``X-Amz-Target``; ``body`` a regex
    searched in the request body (as Latin-1 text), to tell apart calls of one operation
    (e.g. GetMetricData's ``SampleCount`` probe from its ``Average`` reads)."""

    status: int
    code: str
    message: str = "injected by FaultProxy"
    method: str | None = None  # None: any method
    path: str = ""
    target: str | None = None  # None: any (or no) X-Amz-Target
    times: int | None = None
    body: str | None = None  # None: any body
    protocol: str = "xml"  # "xml" (S3 / query) or "json" (SageMaker, x-amz-json-1.1)
    hits: int = 0  # requests answered with the fault
    passed: int = 0  # matching requests let through once ``times`` was used up

    @classmethod
    def s3(cls, method: str, path: str, status: int, code: str, **kw: Any) -> Fault:
        return cls(status, code, method=method, path=path, protocol="xml", **kw)

    @classmethod
    def json(cls, target: str, status: int, code: str, **kw: Any) -> Fault:
        return cls(status, code, method="POST", target=target, protocol="json", **kw)

    def matches(self, method: str, path: str, target: str | None, body: bytes = b"") -> bool:
        if self.method is not None and method.upper() != self.method.upper():
            return False
        if self.path and not re.search(self.path, path):
            return False
        if self.body is not None and not re.search(self.body, body.decode("latin-1")):
            return False
        return self.target is None or (
            target is not None and re.fullmatch(self.target, target) is not None
        )

    def response(self, request_id: str) -> tuple[dict[str, str], bytes]:
        if self.protocol == "json":
            body = json.dumps({"__type": self.code, "message": self.message}).encode()
            return {
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-RequestId": request_id,
                "x-amzn-ErrorType": self.code,
            }, body
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return {"Content-Type": "application/xml", "x-amz-request-id": request_id}, xml.encode()


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the status it answered with."""

    method: str
    path: str
    target: str | None
    status: int
    fault: Fault | None = field(default=None, compare=False)


class FaultProxy:
    """A threaded forwarding proxy to ``upstream`` (``http://host:port``) with fault rules."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._seen: list[Seen] = []
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.url = f"http://{host}:{self._server.server_address[1]}"

    # -- rules and what was seen

    def add(self, rule: Fault) -> Fault:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and forget what was seen."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def _pick(self, method: str, path: str, target: str | None, body: bytes = b"") -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path, target, body):
                    continue
                if rule.times is None or rule.hits < rule.times:
                    rule.hits += 1
                    return rule
                rule.passed += 1
            return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    # -- life cycle

    def start(self) -> FaultProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: one line per request would drown test output

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            target = self.headers.get("X-Amz-Target")
            rule = proxy._pick(self.command, self.path, target, body)
            if rule is not None:
                fault_headers, payload = rule.response(f"fault-{rule.hits}")
                self._send(rule.status, list(fault_headers.items()), payload)
                proxy._record(Seen(self.command, self.path, target, rule.status, rule))
                return
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                forward = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=forward)
                resp = conn.getresponse()
                headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
                length = resp.getheader("Content-Length")
                if self.command == "HEAD" or resp.status in (204, 304) or length is None:
                    # no framing to stream by: pass the (small) body whole
                    self._send(
                        resp.status,
                        headers,
                        resp.read(),
                        head=self.command == "HEAD",
                        length=length,
                    )
                else:
                    self.send_response(resp.status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    while chunk := resp.read(_CHUNK):
                        self.wfile.write(chunk)
                proxy._record(Seen(self.command, self.path, target, resp.status))
            finally:
                conn.close()

        def _send(
            self,
            status: int,
            headers: list[tuple[str, str]],
            payload: bytes,
            *,
            head: bool = False,
            length: str | None = None,
        ) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", length if head and length else str(len(payload)))
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    return Handler
