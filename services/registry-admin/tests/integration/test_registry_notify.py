"""Notification handling against the real registry: a push event waits until its tag
resolves (distribution#2625), a redelivered notification is one event, an unresolvable one
is an error; and the certificate is renewed at two thirds of its lifetime (clock moved)."""

from __future__ import annotations

import json
import os
import ssl
import uuid

import aiohttp
import pytest
from ra_support import push_image

from registry_admin import pki
from registry_admin.registry_api import ACCEPT_MANIFESTS
from unify_common.events import ErrorEvent, ImagePushed, RegistryStep, decode_event
from unify_testkit.aio import wait_until

PUSHED = "unify.registry.image.pushed"


def envelope(event_id: str, repository: str, tag: str, digest: str) -> bytes:
    return json.dumps({"events": [{
        "id": event_id, "timestamp": "2026-12-06T01:00:00.5Z", "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "size": 400, "digest": digest, "length": 400, "repository": repository,
                   "tag": tag},
        "actor": {"name": "ci"}, "source": {"addr": "reg-a:5000"}}]}).encode()


async def pushed_ids(js) -> list[str]:
    """``registry_event_id`` of every ``ImagePushed`` the stream holds, in stream order."""
    info = await js.stream_info("UNIFY", subjects_filter=PUSHED)
    count = (info.state.subjects or {}).get(PUSHED, 0)
    if not count:
        return []
    sub = await js.subscribe(PUSHED, ordered_consumer=True)
    try:
        return [decode_event((await sub.next_msg(timeout=5)).data).registry_event_id
                for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def test_push_event_waits_for_the_tag_and_redelivery_is_one_event(cluster):
    s = cluster.admin.settings
    ctx = ssl.create_default_context(cafile=str(s.ca_cert_path))
    digest, _blobs, _size = await push_image(s.registry_url, str(s.ca_cert_path), "ra-late/app",
                                             "1", os.urandom(2000))
    early_id, never_id = str(uuid.uuid4()), str(uuid.uuid4())
    url = f"http://127.0.0.1:{cluster.admin.notify_port}/notify"
    auth = {"Authorization": f"Bearer {cluster.admin.notify_token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        # the notification of tag 2 arrives before tag 2 exists: sent twice (a redelivery)
        for _ in range(2):
            async with http.post(url, data=envelope(early_id, "ra-late/app", "2", digest),
                                 headers=auth) as r:
                assert r.status == 200
        async with http.post(url, data=envelope(never_id, "ra-late/app", "never", digest),
                             headers=auth) as r:
            assert r.status == 200
        async with http.get(f"{s.registry_url}/v2/ra-late/app/manifests/1",
                            headers={"Accept": ACCEPT_MANIFESTS}) as r:
            raw, media = await r.read(), r.headers["Content-Type"]
        # registry-admin asked for tag 2 twice and was told 404 both times (the registry's
        # access log): after the first answer it either published, which is stored before
        # it asks again, or went on waiting
        log = next(p.log for p in cluster.procs.values()
                   if s.registry_url.endswith(f":{p.port}"))
        refused = '"HEAD /v2/ra-late/app/manifests/2 HTTP/1.1" 404'
        await wait_until(lambda: log.read_text(errors="replace").count(refused) >= 2,
                         timeout=10, what="two refused look-ups of tag 2")
        assert early_id not in await pushed_ids(cluster.admin.subscriber.js)
        async with http.put(f"{s.registry_url}/v2/ra-late/app/manifests/2", data=raw,
                            headers={"Content-Type": media}) as r:
            assert r.status == 201
    early = await cluster.collector.wait_for(
        lambda e: isinstance(e, ImagePushed) and e.registry_event_id == early_id)
    assert (early.repository, early.tag, early.digest, early.actor, early.instance) == (
        "ra-late/app", "2", digest, "ci", "reg-a:5000")
    err = await cluster.collector.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.reason == "tag-unresolved", timeout=10)
    assert err.message.startswith(f"ra-late/app:never did not resolve to {digest} within 3s")
    # the stream holds the early push once, and nothing for the unresolvable one
    ids = await pushed_ids(cluster.admin.subscriber.js)
    assert ids.count(early_id) == 1 and never_id not in ids


@pytest.mark.parametrize("cluster", [-61], indirect=True)
@pytest.mark.timeout(120)
async def test_certificate_is_renewed_at_two_thirds_of_its_lifetime(cluster):
    first = cluster.admin.server.cert
    assert first.not_valid_after_utc - first.not_valid_before_utc == \
        __import__("datetime").timedelta(days=90, minutes=5)
    await cluster.admin.reconcile_now()  # 61 days before now: 1 day into its life
    assert cluster.admin.server.cert == first
    cluster.offset["days"] = 0  # now: 61 of 90 days gone, past two thirds
    await cluster.admin.reconcile_now()
    renewed = cluster.admin.server.cert
    assert renewed != first and pki.sans_of(renewed) == pki.sans_of(first)
    await cluster.all_serving_current()
    issue = await cluster.collector.wait_for(
        lambda e: isinstance(e, RegistryStep) and e.step == "issue"
        and e.detail.startswith("renewal-due"))
    assert issue.status == "ok"
