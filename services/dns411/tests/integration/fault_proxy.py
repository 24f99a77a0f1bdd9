"""A small HTTP proxy in front of moto that injects Route 53 errors (test-only stand-in).

Every request is forwarded to moto unchanged unless a rule answers it first. Rules are
``(predicate(method, path, body) -> bool, times, code, message)``: the first ``times``
matching requests get HTTP 400 with a Route 53 error document (REST-XML ``ErrorResponse``,
as the Route 53 API Reference's "Errors" page shows) instead of reaching moto.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Predicate = Callable[[str, str, bytes], bool]


@dataclass
class Rule:
    predicate: Predicate
    times: int
    code: str
    message: str


def is_change(method: str, path: str, body: bytes) -> bool:
    """ChangeResourceRecordSets: ``POST /2013-04-01/hostedzone/<id>/rrset``."""
    return method == "POST" and path.rstrip("/").endswith("/rrset")


def is_listing(method: str, path: str, body: bytes) -> bool:
    """ListResourceRecordSets: ``GET /2013-04-01/hostedzone/<id>/rrset``."""
    return method == "GET" and path.split("?")[0].rstrip("/").endswith("/rrset")


def is_zone_list(method: str, path: str, body: bytes) -> bool:
    """ListHostedZones: ``GET /2013-04-01/hostedzone``."""
    return method == "GET" and path.split("?")[0].rstrip("/").endswith("/hostedzone")


def is_zone_read(method: str, path: str, body: bytes) -> bool:
    """GetHostedZone: ``GET /2013-04-01/hostedzone/<id>``."""
    parts = path.split("?")[0].rstrip("/").split("/")
    return method == "GET" and len(parts) >= 2 and parts[-2] == "hostedzone"


class FaultProxy:
    """``url`` is the proxy's endpoint; ``requests`` lists ``(method, path, body, status)``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, bytes, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = proxy._answer(self.command, self.path, body,
                                                         dict(self.headers))
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                           "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_rule(self, predicate: Predicate, *, times: int, code: str, message: str) -> None:
        with self._lock:
            self.rules.append(Rule(predicate, times, code, message))

    def _answer(self, method: str, path: str, body: bytes, headers: dict):
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.predicate(method, path, body):
                    rule.times -= 1
                    self.requests.append((method, path, body, 400))
                    doc = ('<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.'
                           'amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type>'
                           f"<Code>{rule.code}</Code><Message>{rule.message}</Message>"
                           "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
                    return 400, [("Content-Type", "text/xml")], doc.encode()
        forwarded = dict(headers)
        forwarded.setdefault("Content-Type", "")
        req = urllib.request.Request(self.upstream + path, data=body or None, method=method,
                                     headers=forwarded)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, out_headers, payload = resp.status, resp.getheaders(), resp.read()
        except urllib.error.HTTPError as err:
            status, out_headers, payload = err.code, err.headers.items(), err.read()
        with self._lock:
            self.requests.append((method, path, body, status))
        return status, out_headers, payload

    def count(self, predicate: Predicate) -> int:
        with self._lock:
            return sum(1 for m, p, b, _ in self.requests if predicate(m, p, b))

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
