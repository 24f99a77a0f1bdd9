"""A tiny real HTTP backend for ``unify dev demo``, the end-to-end tests and the benchmarks.

``python -m unify_testkit.demo_backend --port P --name NAME`` answers every GET with
``hello from NAME\\n`` (and ``X-Backend: NAME``) until stopped.
"""

from __future__ import annotations

import argparse
import http.server
import sys


def serve(port: int, name: str, host: str = "127.0.0.1") -> None:
    """Serve forever on ``host:port``; every GET/HEAD gets 200 and the backend's name."""
    body = f"hello from {name}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # health checks that hang up early are normal, not worth a traceback

    Server((host, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description="tiny HTTP backend that says its name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
