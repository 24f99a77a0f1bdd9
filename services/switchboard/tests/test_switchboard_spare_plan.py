"""Pure tables: host maps in the rendering, spare backends, and the spare fast path's
runtime commands (exact text)."""

from __future__ import annotations

import pytest

from switchboard.desired import backend_name, build_desired
from switchboard.model import Certificate
from switchboard.plan import SparePlan, runtime_commands, spare_commands
from switchboard.render import RenderOptions, config_hash, render, render_maps
from tests.fixtures.catalog import make_instance

OPTIONS = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=True)
WEB, DOCS, API = (backend_name("http", s) for s in ("web", "docs", "api"))
CERTS = (Certificate("/c/star.pem", ("*.example.com",), "f1"),)


def inst(service: str, instance_id: str, last: int, tags: list[str], **kwargs):
    return make_instance(service, instance_id, f"10.0.0.{last}", 8000 + last, tags, **kwargs)


def vhost(name: str, *extra: str) -> list[str]:
    return ["dns=example.com", f"vhost={name}", "http=8080", *extra]


BASE = [inst("web", "w1", 1, vhost("web")),
        inst("api", "a1", 2, vhost("web", "url_prefix=/api"))]


def desired(instances, spares: int = 2):
    return build_desired(instances, certificates=CERTS, spare_backends=spares)


def test_host_only_routes_go_through_the_map_prefix_routes_stay_rules():
    text = render(desired(BASE), OPTIONS).decode()
    assert f"""
frontend fe_http_8080
    bind 127.0.0.1:8080
    mode http
    option forwardfor
    option idle-close-on-response
    http-request set-header X-Forwarded-Proto http
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    use_backend {API} if {{ var(txn.host) -m str web.example.com }} {{ path -m str /api }} || {{ var(txn.host) -m str web.example.com }} {{ path_beg /api/ }}
    use_backend %[var(txn.host),map_str(/run/sb/fe_http_8080.map)]
    default_backend be_no_route

backend {API}
""" in text
    assert render_maps(desired(BASE), OPTIONS) == {
        "/run/sb/fe_http_8080.map": f"web.example.com {WEB}\n".encode()}


def test_spare_backends_are_rendered_empty_with_the_default_profile():
    text = render(desired(BASE, spares=2), OPTIONS).decode()
    assert """
backend be_spare_1
    mode http
    balance roundrobin
    option httpchk
    http-check send meth GET uri /
    server s1 127.0.0.1:1 check disabled
    server s2 127.0.0.1:1 check disabled
    server s3 127.0.0.1:1 check disabled
    server s4 127.0.0.1:1 check disabled

backend be_spare_2
""" in text


def test_tls_frontends_keep_rules_and_get_no_map():
    data = desired([inst("app", "p1", 3, ["dns=example.com", "vhost=app", "https=8443"])])
    text = render(data, OPTIONS).decode()
    assert f"    use_backend {backend_name('http', 'app')} if {{ var(txn.host) -m str " \
           "app.example.com }\n" in text
    assert "map_str" not in text
    assert render_maps(data, OPTIONS) == {}


def test_config_hash_covers_the_maps():
    data = render(desired(BASE), OPTIONS)
    maps = render_maps(desired(BASE), OPTIONS)
    assert config_hash(data) == config_hash(data, {})
    assert config_hash(data, maps) != config_hash(data)
    assert config_hash(data, maps) != config_hash(data, {k: b"" for k in maps})


def test_new_default_vhost_fills_a_spare_and_the_host_map():
    live = desired(BASE)
    docs = [inst("docs", "d1", 5, vhost("docs") + ["dns=example.org"]),
            inst("docs", "d2", 4, vhost("docs") + ["dns=example.org"], status="warning")]
    target = desired(BASE + docs)
    keys = sorted((i.key, i) for i in docs)
    first, second = keys[0][1], keys[1][1]

    def fill(slot, i):
        weight = "0" if i.health == "warning" else "1"
        return [f"set server be_spare_1/s{slot} addr {i.address} port {i.port}",
                f"set weight be_spare_1/s{slot} {weight}",
                f"set server be_spare_1/s{slot} state ready",
                f"set server be_spare_1/s{slot} health up"]

    assert spare_commands(live, target, OPTIONS) == SparePlan(
        apply=(*fill(1, first), *fill(2, second),
               "add map /run/sb/fe_http_8080.map docs.example.com be_spare_1",
               "add map /run/sb/fe_http_8080.map docs.example.org be_spare_1"),
        undo=("del map /run/sb/fe_http_8080.map docs.example.com",
              "del map /run/sb/fe_http_8080.map docs.example.org",
              "set server be_spare_1/s1 state maint",
              "set server be_spare_1/s1 addr 127.0.0.1 port 1",
              "set server be_spare_1/s2 state maint",
              "set server be_spare_1/s2 addr 127.0.0.1 port 1"),
        spares=((DOCS, "be_spare_1"),))


def test_new_unchecked_vhost_fills_a_spare_with_its_check_stopped():
    live = desired(BASE)
    docs = inst("docs", "d1", 5, vhost("docs", "check=disabled"))
    assert spare_commands(live, desired(BASE + [docs]), OPTIONS) == SparePlan(
        apply=("disable health be_spare_1/s1",
               f"set server be_spare_1/s1 addr {docs.address} port {docs.port}",
               "set weight be_spare_1/s1 1",
               "set server be_spare_1/s1 state ready",
               "set server be_spare_1/s1 health up",
               "add map /run/sb/fe_http_8080.map docs.example.com be_spare_1"),
        undo=("del map /run/sb/fe_http_8080.map docs.example.com",
              "set server be_spare_1/s1 state maint",
              "set server be_spare_1/s1 addr 127.0.0.1 port 1",
              "enable health be_spare_1/s1"),
        spares=((DOCS, "be_spare_1"),))


NOT_SPARE = {
    # extra instances on top of BASE -> why the change waits for the reload
    "url-prefix-route": [inst("docs", "d1", 5, vhost("web", "url_prefix=/docs"))],
    "balance-tag": [inst("docs", "d1", 5, vhost("docs", "balance=leastconn"))],
    "check-tag": [inst("docs", "d1", 5, vhost("docs", "check=HEAD /health"))],
    "tls-to-servers": [inst("docs", "d1", 5, vhost("docs", "ssl=backend"))],
    "https-listener": [inst("docs", "d1", 5, ["dns=example.com", "vhost=docs",
                                               "https=8443"])],
    "new-port": [inst("docs", "d1", 5, ["dns=example.com", "vhost=docs", "http=8081"])],
    "tcp-service": [inst("docs", "d1", 5, ["tcp=9000"])],
    "more-servers-than-spare-slots": [inst("docs", f"d{i}", 10 + i, vhost("docs"))
                                      for i in range(5)],
    "more-new-vhosts-than-spares": [inst(n, f"{n}1", 10 + i, vhost(n))
                                    for i, n in enumerate(("docs", "blog", "shop"))],
    "membership-change-too": [inst("docs", "d1", 5, vhost("docs")),
                              inst("web", "w2", 6, vhost("web"))],
}


@pytest.mark.parametrize("extra", list(NOT_SPARE.values()), ids=list(NOT_SPARE))
def test_other_changes_wait_for_the_reload(extra):
    assert spare_commands(desired(BASE), desired(BASE + extra), OPTIONS) is None


def test_no_spare_path_without_host_maps_or_spares():
    target = desired(BASE + [inst("docs", "d1", 5, vhost("docs"))])
    assert spare_commands(desired(BASE), target,
                          RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=False)) is None
    assert spare_commands(desired(BASE, spares=0),
                          desired(BASE + [inst("docs", "d1", 5, vhost("docs"))], spares=0),
                          OPTIONS) is None
    assert spare_commands(desired(BASE), desired(BASE), OPTIONS) is None


def test_host_only_routes_between_existing_backends_change_at_runtime():
    # web gains example.org, blog's vhost is renamed, api gains a server: no reload
    blog = backend_name("http", "blog")
    before = BASE + [inst("blog", "b1", 3, vhost("blog"))]
    a2 = inst("api", "a2", 5, vhost("web", "url_prefix=/api"))
    after = [inst("web", "w1", 1, vhost("web", "dns=example.org")), BASE[1], a2,
             inst("blog", "b1", 3, vhost("x"))]
    path = "/run/sb/fe_http_8080.map"
    assert runtime_commands(desired(before), desired(after), OPTIONS) == [
        f"set server {API}/s2 addr 10.0.0.5 port 8005",
        f"set weight {API}/s2 1",
        f"set server {API}/s2 state ready",
        f"set server {API}/s2 health up",
        f"del map {path} blog.example.com",
        f"add map {path} web.example.org {WEB}",
        f"add map {path} x.example.com {blog}",
    ]
    # without host maps the same change is structural
    assert runtime_commands(desired(before), desired(after)) is None


def test_set_map_when_a_host_moves_to_another_existing_backend():
    blog = backend_name("http", "blog")
    before = desired([*BASE, inst("blog", "b1", 3, vhost("blog"))])
    # blog lets go of blog.example.com (and takes gone.example.com), web takes it over
    after = desired([inst("web", "w1", 1, vhost("blog")), BASE[1],
                     inst("blog", "b1", 3, vhost("gone"))])
    path = "/run/sb/fe_http_8080.map"
    assert runtime_commands(before, after, OPTIONS) == [
        f"del map {path} web.example.com",
        f"set map {path} blog.example.com {WEB}",
        f"add map {path} gone.example.com {blog}",
    ]
