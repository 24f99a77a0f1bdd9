"""The tag language end to end through real HAProxy: TLS offloading, bridge, pass-through by
SNI on a shared port (with a PROXY-protocol hop to the terminator), tcp, url_prefix, a missing
certificate, tag disagreement."""

from __future__ import annotations

import ssl

import httpx
from sb_support import get_body
from sb_tls import TestCA

from tests.fixtures.catalog import make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


def server_context(bundle) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(bundle)
    return context


async def https_get(port: int, host: str, ca, path: str = "/") -> httpx.Response:
    """GET through ``127.0.0.1:port`` with SNI and Host ``host``, verifying against ``ca``."""
    context = ssl.create_default_context(cafile=str(ca.ca_path))
    async with httpx.AsyncClient(verify=context, timeout=5.0) as client:
        return await client.get(f"https://127.0.0.1:{port}{path}", headers={"Host": host},
                                extensions={"sni_hostname": host})


async def test_tls_modes_prefix_and_tcp_through_haproxy(
        sb_common, nc, haproxy, backends, events, switchboard_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    cert_dir = tmp_path / "certs"
    ca.issue(["*.example.com"], cert_dir / "wildcard.pem")
    ca.issue(["shop.other.net"], cert_dir / "shop.pem")
    vault_bundle = ca.issue(["vault.example.com"], tmp_path / "vault-server.pem")
    internal_bundle = ca.issue(["internal"], tmp_path / "internal-server.pem")
    js = nc.jetstream()
    https_port, http_port, tcp_port = free_port(), free_port(), free_port()

    plain = backends("plain")
    bridged = backends("bridged", tls=server_context(internal_bundle))
    vault = backends("vault", tls=server_context(vault_bundle))
    api = backends("api")
    raw = backends("raw")
    catalog = [
        make_instance("app", "app-1", "127.0.0.1", plain.port,
                      ["dns=example.com", "vhost=app", f"https={https_port}",
                       f"http={http_port}", "ssl=offloading"], create_index=1),
        make_instance("api", "api-1", "127.0.0.1", api.port,
                      ["dns=example.com", "vhost=app", f"http={http_port}",
                       "url_prefix=/api"], create_index=2),
        make_instance("secure", "sec-1", "127.0.0.1", bridged.port,
                      ["dns=example.com", "vhost=secure", f"https={https_port}",
                       "ssl=bridge", "check=disabled"], create_index=3),
        make_instance("vault", "vault-1", "127.0.0.1", vault.port,
                      ["dns=example.com", "vhost=vault", f"https={https_port}",
                       "ssl=pass-through"], create_index=4),
        make_instance("raw", "raw-1", "127.0.0.1", raw.port, [f"tcp={tcp_port}"],
                      create_index=5),
        # Its own certificate, picked by SNI on the shared port.
        make_instance("shop", "shop-1", "127.0.0.1", api.port,
                      ["dns=other.net", "vhost=shop", f"https={https_port}"], create_index=7),
        # No certificate covers other.org: only this vhost is skipped.
        make_instance("orphan", "orphan-1", "127.0.0.1", plain.port,
                      ["dns=other.org", "vhost=www", f"https={https_port}"], create_index=6),
        # Disagreeing instance of api (tags differ): left out and reported.
        make_instance("api", "api-0", "127.0.0.1", raw.port,
                      ["dns=example.com", "vhost=app", f"http={http_port}",
                       "url_prefix=/v0"], create_index=2),
        make_instance("api", "api-2", "127.0.0.1", api.port,
                      ["dns=example.com", "vhost=app", f"http={http_port}",
                       "url_prefix=/api"], create_index=2),
    ]
    for inst in catalog:
        await put_instance(js, sb_common, inst)
    await switchboard_factory(cert_dir=cert_dir)

    async def ready() -> bool:
        try:
            return (await https_get(https_port, "vault.example.com", ca)).text == "vault"
        except Exception:
            return False

    await wait_until(ready, timeout=30, what="pass-through route")

    offloaded = await https_get(https_port, "app.example.com", ca)
    assert (offloaded.status_code, offloaded.text) == (200, "plain")
    # The client address survives the PROXY-protocol hop to the TLS terminator.
    assert offloaded.headers["X-Seen-Forwarded-For"] == "127.0.0.1"
    assert offloaded.headers["X-Seen-Forwarded-Proto"] == "https"
    shop = await https_get(https_port, "shop.other.net", ca)
    assert (shop.status_code, shop.text) == (200, "api")
    bridged_resp = await https_get(https_port, "secure.example.com", ca)
    assert (bridged_resp.status_code, bridged_resp.text) == (200, "bridged")
    passed = await https_get(https_port, "vault.example.com", ca)
    assert (passed.status_code, passed.text) == (200, "vault")
    assert passed.headers["X-Seen-Forwarded-For"] == ""  # never decrypted by HAProxy

    assert await get_body(http_port, "app.example.com", "/api") == (200, "api")
    assert await get_body(http_port, "app.example.com", "/api/users") == (200, "api")
    assert await get_body(http_port, "app.example.com", "/apiary") == (200, "plain")
    assert await get_body(http_port, "app.example.com", "/") == (200, "plain")
    assert await get_body(http_port, "app.example.com", "/v0") == (200, "plain")

    async with httpx.AsyncClient(timeout=5.0) as client:
        resp = await client.get(f"http://127.0.0.1:{tcp_port}/", headers={"Host": "any"})
    assert (resp.status_code, resp.text) == (200, "raw")

    reasons = sorted((e.reason, e.service, e.instance_id) for e in events.errors)
    assert reasons == [("missing-certificate", "orphan", "orphan-1"),
                       ("tag-disagreement", "api", "api-0")]
