"""moto's standalone server: a real HTTP endpoint speaking the AWS APIs (Route 53 here).

AWS is the one dependency Unify may stand in for; boto3 reaches this server through
``endpoint_url`` (or ``AWS_ENDPOINT_URL_ROUTE_53``), exactly as it would reach AWS.
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

from .process import ManagedProcess, free_port

__all__ = ["MotoServer", "moto_server_binary"]


def moto_server_binary() -> str:
    """``moto_server`` next to this Python, else on PATH.

    :raises RuntimeError: not installed (``pip install 'moto[server]'``).
    """
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found: pip install 'moto[server]'")
    return found


class MotoServer:
    """``moto_server`` on ``127.0.0.1:<port>``; all state is in memory and lost on stop.

    ``endpoint_url`` is ``http://127.0.0.1:<port>``. :meth:`env` gives the variables a
    process needs to reach it with boto3 (dummy credentials, region, endpoint).
    """

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """AWS SDK variables pointing at this server (the keys are dummies moto accepts)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as resp:
            return resp.status == 200

    def start(self) -> MotoServer:
        """Start and wait until it answers HTTP. :raises TimeoutError: / RuntimeError:."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "moto", [moto_server_binary(), "-H", "127.0.0.1", "-p", str(self.port)],
            log_path=self.workdir / "moto.log")
        self.process.start(self._answers, timeout=60)
        return self

    def reset(self) -> None:
        """Drop every resource (moto's ``/moto-api/reset``)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self) -> None:
        """Stop the server."""
        if self.process:
            self.process.stop()
