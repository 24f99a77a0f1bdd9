"""Tiny real HTTP backends for the integration tests: each answers every GET with its own name
(and echoes the path and X-Forwarded-For in headers), on a free 127.0.0.1 port."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["NamedBackend"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.server.backend_name.encode()
        healthy = self.server.healthy or self.path != "/health"
        if self.path == "/health":
            self.server.seen_methods.append(self.command)
        if "X-Forwarded-For" not in self.headers:  # HAProxy adds it to what it proxies only
            self.server.checks += 1
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Path", self.path)
        self.send_header("X-Seen-Forwarded-For", self.headers.get("X-Forwarded-For", ""))
        self.send_header("X-Seen-Forwarded-Proto", self.headers.get("X-Forwarded-Proto", ""))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET
    do_OPTIONS = do_GET

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # health checks and proxies close connections abruptly; that is normal


class NamedBackend:
    """A threaded HTTP/1.1 server on ``127.0.0.1:<port>`` answering ``name`` to every request;
    with ``tls`` (a server-side :class:`ssl.SSLContext`) it speaks HTTPS. ``/health`` answers
    503 while :attr:`healthy` is false; :attr:`health_methods` lists the methods it saw."""

    def __init__(self, name: str, tls: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.server = _Server(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.server.backend_name = name
        self.server.healthy = True
        self.server.seen_methods = []
        self.server.checks = 0
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name=f"backend-{name}")
        self.thread.start()

    @property
    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 (else 503)."""
        return self.server.healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.server.healthy = value

    @property
    def health_methods(self) -> list[str]:
        """HTTP methods of the ``/health`` requests received so far."""
        return list(self.server.seen_methods)

    @property
    def checks(self) -> int:
        """Requests received without ``X-Forwarded-For``: HAProxy's health checks (it adds
        the header to every request it proxies, ``option forwardfor``), when the test sends
        nothing to the backend directly."""
        return self.server.checks

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
