"""Golden renderings: the exact bytes of a small mixed catalog and the SHA-256 of a large one.

They pin the renderer's output so that optimisations of the build and render paths can prove
they change nothing. Regenerate ``golden/small.cfg`` only for an intended change of the
configuration, never to make an optimisation pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from switchboard import desired as desired_module
from switchboard import render as render_module
from switchboard.desired import build_desired
from switchboard.model import Certificate
from switchboard.plan import slot_layout
from switchboard.render import RenderOptions, render
from tests.fixtures.catalog import make_instance, vhost_catalog

GOLDEN = Path(__file__).parent / "golden"
OPTIONS = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", maxconn=2000,
                        hard_stop_after="10s", ssl_ciphers="ECDHE+AESGCM:!aNULL",
                        host_maps=False)
CERTS = (Certificate("/c/star.pem", ("*.example.com",), "f1"),
         Certificate("/c/other.pem", ("www.other.org",), "f2"))


def small_catalog():
    """Every kind of frontend, route, TLS mode, check and server state once."""
    web = ["dns=example.com", "dns=example.org", "vhost=web"]
    return [
        make_instance("web", "w1", "10.0.0.1", 8080, web, create_index=1),
        make_instance("web", "w2", "10.0.0.2", 8080, web, status="warning", create_index=1),
        make_instance("web", "w3", "10.0.0.3", 8080, web, status="critical", create_index=1),
        make_instance("api", "a1", "fd00::7", 9000,
                      ["dns=example.com", "vhost=web", "url_prefix=/api", "check=HEAD /health",
                       "balance=leastconn"], create_index=2),
        make_instance("v2", "v1", "10.0.0.4", 9001,
                      ["dns=example.com", "vhost=web", "url_prefix=/api/v2/"], create_index=3),
        make_instance("db", "d1", "10.0.0.5", 5432, ["tcp=15432", "check=disabled"],
                      create_index=4),
        make_instance("app", "p1", "10.0.0.6", 443,
                      ["dns=example.com", "vhost=app", "https=8443"], create_index=5),
        make_instance("vault", "t1", "10.0.0.7", 8200,
                      ["dns=example.com", "vhost=vault", "https=8443", "ssl=pass-through"],
                      create_index=6),
        make_instance("www", "x1", "10.0.0.8", 80,
                      ["dns=other.org", "vhost=www", "https=9443", "ssl=offloading"],
                      create_index=7),
        make_instance("legacy", "l1", "10.0.0.9", 8443,
                      ["dns=example.com", "vhost=legacy", "http=8081", "ssl=backend"],
                      create_index=8),
        make_instance("big", "b1", "10.0.1.1", 80, ["dns=example.com", "vhost=big"],
                      create_index=9),
        *[make_instance("big", f"b{i}", f"10.0.1.{i}", 80, ["dns=example.com", "vhost=big"],
                        create_index=9) for i in range(2, 7)],
    ]


def large_catalog(count: int = 2000, services: int = 100):
    """The render benchmark's catalog, with every health status."""
    return vhost_catalog(count, services, statuses=("passing", "warning", "critical"))


def test_small_catalog_renders_exactly_the_golden_file():
    data = render(build_desired(small_catalog(), certificates=CERTS), OPTIONS)
    assert data == (GOLDEN / "small.cfg").read_bytes()


def test_small_catalog_with_previous_slots_renders_the_golden_file():
    desired = build_desired(small_catalog(), certificates=CERTS)
    again = build_desired(small_catalog(), certificates=CERTS,
                          previous_slots=slot_layout(desired))
    assert render(again, OPTIONS) == (GOLDEN / "small.cfg").read_bytes()


def test_large_catalog_hash_is_pinned():
    desired = build_desired(large_catalog())
    data = render(desired, OPTIONS)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (LARGE_LEN, LARGE_SHA256)
    # one instance gone, the rest keep their slots: a different, equally pinned text
    layout = slot_layout(desired)
    fewer = build_desired(large_catalog()[1:], previous_slots=layout)
    data = render(fewer, OPTIONS)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (FEWER_LEN, FEWER_SHA256)


LARGE_LEN = 389687
LARGE_SHA256 = "7336546aeede8f8eceb38cf7566c0c4ba9b6312a222837c9eb3777cd7ecded69"
FEWER_LEN = 389649
FEWER_SHA256 = "13fde2c13bbb79da6a884fc1a0a36468869cb5c12cf80d8412c67d38dcd62fef"


def test_cached_builds_equal_builds_from_nothing_through_a_series_of_changes():
    base = large_catalog(600, 30)
    moved = msgspec.structs.replace(base[7], address="10.9.9.9")
    sick = msgspec.structs.replace(base[8], health="critical")
    retagged = make_instance("svc3", "svc3-x", "10.9.0.1", 80,
                             ["dns=example.com", "vhost=other"], create_index=4)
    steps = [base, base[1:], base[1:] + [retagged], [moved, sick] + base[9:], base, base]
    layouts = [None]
    cached = []
    for number, instances in enumerate(steps):  # the same objects: every cache in play
        if number == len(steps) - 1:  # same instances, other slots (a restart's layout)
            layouts[-1] = {name: tuple(reversed(slots)) for name, slots in layouts[-1].items()}
        desired = build_desired(instances, previous_slots=layouts[-1], spare_backends=2)
        cached.append((desired, render(desired, OPTIONS)))
        layouts.append(slot_layout(desired))
    for instances, layout, (desired, data) in zip(steps, layouts, cached):
        desired_module.clear_caches()
        render_module.clear_caches()
        again = build_desired([msgspec.structs.replace(i) for i in instances],
                              previous_slots=layout, spare_backends=2)
        assert (again, again.problems) == (desired, desired.problems)
        render_module.clear_caches()
        assert render(again, OPTIONS) == data


def test_builders_and_renderers_keep_their_own_caches():
    """Two builders and renderers (two reconcilers in one process) used in turn on different
    catalogs give what building and rendering each from nothing gives."""
    from switchboard.desired import DesiredBuilder
    from switchboard.render import Renderer

    one, two = large_catalog(300, 15), small_catalog()
    builders, renderers = (DesiredBuilder(), DesiredBuilder()), (Renderer(), Renderer())
    for _ in range(2):
        for catalog, builder, renderer, certs in zip((one, two), builders, renderers,
                                                     ((), CERTS)):
            desired = builder.build(catalog, certificates=certs)
            assert renderer.render(desired, OPTIONS) == Renderer().render(
                DesiredBuilder().build(catalog, certificates=certs), OPTIONS)
    assert renderers[1].render(builders[1].build(two, certificates=CERTS), OPTIONS) == (
        GOLDEN / "small.cfg").read_bytes()
