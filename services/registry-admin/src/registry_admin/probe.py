"""Does one registry instance accept an upload another one started? (the shared-secret probe)

distribution hands out the state of an upload as the ``_state`` query parameter of its
``Location``, signed with ``http.secret``; an instance with another secret refuses it with
``BLOB_UPLOAD_INVALID`` (or ``BLOB_UPLOAD_UNKNOWN``). :func:`accepts_upload_state` starts an
upload on ``a`` (``POST /v2/<repo>/blobs/uploads/``), asks ``b`` for its status with the
same ``Location`` (``GET``, 204 when accepted) and cancels it on ``a`` (``DELETE``). Nothing
is written but an empty upload directory in the probe repository, removed by the cancel.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import aiohttp

from .plan import Node

__all__ = ["PROBE_REPOSITORY", "accepts_upload_state"]

PROBE_REPOSITORY = "unify-probe/secret"


async def accepts_upload_state(a: Node, b: Node, ca_file: str, *, timeout: float = 5.0
                               ) -> bool | None:
    """``True`` when ``b`` accepts an upload started on ``a``, ``False`` when it refuses it
    as invalid or unknown, ``None`` when it cannot tell (an instance unreachable or
    read-only, another status)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False  # any SAN may be dialled; the CA is what is checked
    base_a, base_b = f"https://{a.endpoint}", f"https://{b.endpoint}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                         connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.post(f"{base_a}/v2/{PROBE_REPOSITORY}/blobs/uploads/") as resp:
                if resp.status != 202:
                    return None
                location = resp.headers.get("Location", "")
            parts = urlsplit(location)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if not path.startswith(f"/v2/{PROBE_REPOSITORY}/blobs/uploads/"):
                return None
            try:
                async with http.get(base_b + path) as resp:
                    body = await resp.text()
                    if resp.status == 204:
                        return True
                    if resp.status in (400, 404) and ("BLOB_UPLOAD_INVALID" in body
                                                      or "BLOB_UPLOAD_UNKNOWN" in body):
                        return False
                    return None
            finally:
                async with http.delete(base_a + path):
                    pass
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None
