"""Real Debian ``docker-registry`` processes for registry-admin's tests: several instances on
loopback ports sharing one storage directory and one rendered configuration, each kept
running by a small supervisor thread so that "restart" means SIGTERM + start again with the
files as they are now (what a container restart does)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from unify_testkit import wait_until

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_cert_der(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """The DER certificate a TLS server presents, or None when it does not answer."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        return None


@dataclass
class RegistryProcess:
    """One supervised ``docker-registry serve`` on 127.0.0.1:port."""

    name: str
    port: int
    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    restarts: int = 0
    _stop: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RegistryProcess:
        env = {"PATH": os.environ.get("PATH", ""), "REGISTRY_HTTP_ADDR": f"127.0.0.1:{self.port}",
               **self.env}
        with self._lock:
            handle = open(self.log, "ab")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], env=env,
                                         stdout=handle, stderr=subprocess.STDOUT)
            handle.close()
        return self

    def restart(self) -> None:
        """Stop (SIGTERM, bounded) and start again with the current files."""
        self.terminate()
        self.restarts += 1
        self.start()

    def terminate(self) -> None:
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def wait_serving(self, timeout: float = 20.0) -> bytes:
        """The DER certificate the registry serves once it answers TLS on its port.

        :raises RuntimeError: the process exited (with the end of its log), at once.
        :raises unify_testkit.NotReached: no TLS answer within ``timeout`` seconds.
        """
        host = self.env.get("REGISTRY_HTTP_ADDR", "127.0.0.1:0").rsplit(":", 1)[0]

        def served() -> bytes | None:
            der = served_cert_der(host, self.port, timeout=1.0)
            if der is None and self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            return der

        return wait_until(served, timeout=timeout,
                          what=f"{self.name} serving TLS on {host}:{self.port}")


async def push_image(base: str, ca_file: str, repository: str, tag: str, layer: bytes,
                     ) -> tuple[str, set[str], int]:
    """Push a one-layer image through the registry API V2 (monolithic blob uploads, then a
    schema 2 manifest). Returns (manifest digest, {config, layer digests}, config + layer
    size)."""
    import hashlib
    import json
    import ssl

    import aiohttp

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    ctx = ssl.create_default_context(cafile=ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        descriptors = []
        for blob, media in ((config, "application/vnd.docker.container.image.v1+json"),
                            (layer, "application/vnd.docker.image.rootfs.diff.tar.gzip")):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            async with http.post(f"{base}/v2/{repository}/blobs/uploads/") as r:
                assert r.status == 202, await r.text()
                location = r.headers["Location"]
            if location.startswith("/"):
                location = base + location
            sep = "&" if "?" in location else "?"
            async with http.put(f"{location}{sep}digest={digest}", data=blob,
                                headers={"Content-Type": "application/octet-stream"}) as r:
                assert r.status == 201, await r.text()
            descriptors.append({"mediaType": media, "size": len(blob), "digest": digest})
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": descriptors[0], "layers": descriptors[1:]}).encode()
        async with http.put(f"{base}/v2/{repository}/manifests/{tag}", data=manifest,
                            headers={"Content-Type":
                                     "application/vnd.docker.distribution.manifest.v2+json"}
                            ) as r:
            assert r.status == 201, await r.text()
            digest = r.headers["Docker-Content-Digest"]
    return digest, {d["digest"] for d in descriptors}, len(config) + len(layer)
