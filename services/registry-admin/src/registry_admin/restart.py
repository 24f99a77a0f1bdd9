"""Restarting one registry instance, and waiting until it serves a given certificate.

A *restarter* is ``async (Node) -> None``; it returns once the restart was requested.
:func:`wait_serving` then polls the instance's TLS endpoint until it presents the wanted
certificate and answers ``GET /v2/`` (bounded by a deadline).

* ``command``: an argv (no shell) with ``{instance_id}``, ``{node}``, ``{host}``, ``{port}``
  substituted, bounded by a timeout.
* ``docker``: restarts the container named in a registrator instance id
  (``<host>:<container>:<port>``) through the Docker API.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable

import aiohttp

from unify_common.logs import get_logger

from .plan import Node

__all__ = ["Restarter", "command_restarter", "docker_restarter", "served_fingerprint",
           "wait_serving"]

log = get_logger("registry_admin.restart")
Restarter = Callable[[Node], Awaitable[None]]
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def command_restarter(argv: tuple[str, ...], *, timeout: float = 60.0) -> Restarter:
    """A restarter running ``argv`` per instance (see module doc).
    :raises RuntimeError: (when called) the command failed or timed out."""

    async def restart(node: Node) -> None:
        values = {"instance_id": node.instance_id, "node": node.hostname or node.name,
                  "host": node.host, "port": str(node.port)}
        args = [a.format_map(values) for a in argv]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(
                f"restart command for {node.name} timed out after {timeout}s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"restart command for {node.name} exited {proc.returncode}: "
                               f"{out.decode(errors='replace')[-300:].strip()}")

    return restart


def docker_restarter(*, timeout: float = 60.0,
                     environment: dict[str, str] | None = None) -> Restarter:
    """A restarter for containers registered by registrator (id ``host:container:port``),
    through the engine at ``DOCKER_HOST`` of ``environment`` (default: the process's).
    :raises RuntimeError: (when called) the id names no container, or the API failed."""

    async def restart(node: Node) -> None:
        parts = node.instance_id.split(":")
        if len(parts) < 3 or not _CONTAINER.match(parts[1]):
            raise RuntimeError(f"{node.name}: instance id is not registrator's "
                               "host:container:port")
        import docker  # only this mode needs the Docker API

        def run() -> None:
            client = docker.from_env(timeout=int(timeout), environment=environment)
            try:
                client.containers.get(parts[1]).restart(timeout=10)
            finally:
                client.close()

        try:
            await asyncio.wait_for(asyncio.to_thread(run), timeout)
        except Exception as err:
            raise RuntimeError(f"{node.name}: docker restart failed: {err}") from None

    return restart


async def served_fingerprint(host: str, port: int, *, timeout: float = 2.0) -> str | None:
    """``sha256:<hex>`` of the certificate ``host:port`` presents (not verified: this only
    asks *which* certificate it serves), ``None`` when it does not answer TLS."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=None), timeout)
    except (TimeoutError, OSError, ssl.SSLError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout)
        except (TimeoutError, OSError, ssl.SSLError):
            pass
    return "sha256:" + hashlib.sha256(der).hexdigest() if der else None


async def wait_serving(node: Node, wanted_fp: str, ca_file: str, *, timeout: float) -> None:
    """Poll until ``node`` presents ``wanted_fp`` and ``GET /v2/`` answers 200 over TLS
    verified with ``ca_file``. :raises TimeoutError: not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False  # the address may be any SAN; the CA is what is checked here
    delay = 0.05
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2),
                                     connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        while time.monotonic() < deadline:
            if await served_fingerprint(node.host, node.port) == wanted_fp:
                try:
                    async with session.get(f"https://{node.endpoint}/v2/") as resp:
                        if resp.status in (200, 401):
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
    raise TimeoutError(f"{node.name} did not serve the new certificate within {timeout:g}s")
