"""A small client of distribution's HTTP API V2 (aiohttp), as registry-admin and
``unify registry`` use it: resolve a tag, list repositories and tags following ``Link``
pagination (RFC 8288, ``rel="next"``; distribution's "HTTP API V2" page, "Listing
Repositories"), read manifests, delete a manifest.

Every request is bounded by a timeout; URLs and errors never carry credentials (there are
none: the registries run without auth behind the cluster's network, see the README).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import aiohttp

__all__ = ["ACCEPT_MANIFESTS", "Manifest", "RegistryClient", "RegistryError", "next_link"]

ACCEPT_MANIFESTS = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
#: most pages followed in one listing (100 entries a page: 100 000 repositories)
MAX_PAGES = 1000


class RegistryError(Exception):
    """The registry answered unexpectedly or not at all; ``str()`` says which request."""


@dataclass(frozen=True)
class Manifest:
    """A manifest as served: ``digest`` from ``Docker-Content-Digest``, ``size`` the sum of
    config and layer sizes (0 for an index), ``body`` the parsed JSON."""

    digest: str
    media_type: str
    size: int
    body: dict


def next_link(header: str | None, base: str) -> str | None:
    """The absolute URL of the ``rel="next"`` link in a ``Link`` header, or ``None``.
    A link to another host than ``base``'s is refused (``None``): a hostile registry must not
    send the client elsewhere."""
    if not header:
        return None
    m = _LINK.search(header)
    if not m:
        return None
    url = urljoin(base, m.group(1))
    if not url.startswith(base.split("/v2/", 1)[0] + "/v2/"):
        return None
    return url


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """TLS verification against ``ca_file`` (the cluster CA), or the system store.
    :raises RegistryError: ``ca_file`` cannot be read or is no PEM bundle."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as err:
        raise RegistryError(f"CA file {ca_file}: {err.strerror or err}") from None


class RegistryClient:
    """``async with RegistryClient(base_url, ca_file) as reg: ...``; ``base_url`` is
    ``https://host:port`` (no path)."""

    def __init__(self, base_url: str, ca_file: Path | None = None, *,
                 timeout: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self._ssl = ssl_context(ca_file) if self.base.startswith("https:") else False
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def _http(self) -> aiohttp.ClientSession:
        """The session ``async with`` opened.

        :raises AssertionError: used outside ``async with``.
        """
        session = self._session
        assert session is not None, "RegistryClient is used inside 'async with'"
        return session

    def _url(self, path: str) -> str:
        return f"{self.base}{path}"

    async def ping(self) -> bool:
        """``GET /v2/`` answers 200 (or 401: up, but wants auth)."""
        try:
            async with self._http.get(self._url("/v2/")) as resp:
                return resp.status in (200, 401)
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def resolve(self, repository: str, reference: str) -> str | None:
        """The digest ``reference`` (tag or digest) points at, ``None`` when unknown (404).
        :raises RegistryError: another status, or no answer."""
        url = self._url(f"/v2/{repository}/manifests/{quote(reference, safe=':')}")
        try:
            async with self._http.head(url, headers={"Accept": ACCEPT_MANIFESTS}) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise RegistryError(f"HEAD manifest {repository}:{reference}: "
                                        f"HTTP {resp.status}")
                return resp.headers.get("Docker-Content-Digest")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise RegistryError(f"HEAD manifest {repository}:{reference}: {err!r}") from None

    async def _paged(self, path: str, key: str) -> list[str]:
        url: str | None = self._url(path)
        out: list[str] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return out
            try:
                async with self._http.get(url) as resp:
                    if resp.status == 404:
                        return out
                    if resp.status != 200:
                        raise RegistryError(f"GET {path}: HTTP {resp.status}")
                    body = await resp.json(content_type=None)
                    link = resp.headers.get("Link")
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                raise RegistryError(f"GET {path}: {err!r}") from None
            items = body.get(key) if isinstance(body, dict) else None
            out.extend(str(x) for x in items or [])
            url = next_link(link, self.base + "/v2/")
        raise RegistryError(f"GET {path}: more than {MAX_PAGES} pages")

    async def repositories(self, page_size: int = 100) -> list[str]:
        """Every repository (``/v2/_catalog?n=<page_size>``, following ``Link``)."""
        return await self._paged(f"/v2/_catalog?n={page_size}", "repositories")

    async def tags(self, repository: str, page_size: int = 100) -> list[str]:
        """Every tag of ``repository`` (``/v2/<name>/tags/list``, following ``Link``)."""
        return await self._paged(f"/v2/{repository}/tags/list?n={page_size}", "tags")

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest ``reference`` names, ``None`` when unknown."""
        url = self._url(f"/v2/{repository}/manifests/{quote(reference, safe=':')}")
        try:
            async with self._http.get(url, headers={"Accept": ACCEPT_MANIFESTS}) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise RegistryError(f"GET manifest {repository}:{reference}: "
                                        f"HTTP {resp.status}")
                body = await resp.json(content_type=None)
                digest = resp.headers.get("Docker-Content-Digest", "")
                media = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise RegistryError(f"GET manifest {repository}:{reference}: {err!r}") from None
        size = 0
        if isinstance(body, dict):
            parts = [body.get("config") or {}] + list(body.get("layers") or [])
            size = sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))
        return Manifest(digest, media, size, body if isinstance(body, dict) else {})

    async def blob_exists(self, repository: str, digest: str) -> bool:
        """``HEAD /v2/<name>/blobs/<digest>`` answers 200.
        :raises RegistryError: no answer, or a status other than 200/404."""
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        try:
            async with self._http.head(url) as resp:
                if resp.status not in (200, 404):
                    raise RegistryError(f"HEAD blob {repository}@{digest}: HTTP {resp.status}")
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError) as err:
            raise RegistryError(f"HEAD blob {repository}@{digest}: {err!r}") from None

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """``DELETE /v2/<name>/manifests/<digest>``; ``True`` when it was deleted (202)."""
        url = self._url(f"/v2/{repository}/manifests/{digest}")
        try:
            async with self._http.delete(url) as resp:
                return resp.status == 202
        except (aiohttp.ClientError, TimeoutError) as err:
            raise RegistryError(f"DELETE manifest {repository}@{digest}: {err!r}") from None
