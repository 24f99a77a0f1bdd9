"""Pure tables: catalog instances -> exact HAProxy configuration fragments."""

from __future__ import annotations

import random

import pytest

from switchboard.desired import backend_name, build_desired
from switchboard.model import Certificate
from switchboard.render import RenderOptions, render
from tests.fixtures.catalog import make_instance

OPTIONS = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=False)
WEB = backend_name("http", "web")
API = backend_name("http", "api")
DB = backend_name("tcp", "db")


def config(instances, **kwargs) -> str:
    return render(build_desired(instances, **kwargs), OPTIONS).decode()


def key(service: str, instance_id: str) -> str:
    return make_instance(service, instance_id, "10.0.0.1", 1).key


CASES = [
    pytest.param(
        [make_instance("web", "w1", "10.0.0.1", 8080, ["dns=example.com", "vhost=web"])],
        f"""
frontend fe_http_80
    bind 127.0.0.1:80
    mode http
    option forwardfor
    option idle-close-on-response
    http-request set-header X-Forwarded-Proto http
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    use_backend {WEB} if {{ var(txn.host) -m str web.example.com }}
    default_backend be_no_route
""", id="vhost-default-http-80"),
    pytest.param(
        [make_instance("web", "w1", "10.0.0.1", 8080, ["dns=example.com", "vhost=web"]),
         make_instance("web", "w2", "10.0.0.2", 8080, ["dns=example.com", "vhost=web"],
                       status="critical"),
         make_instance("web", "w3", "10.0.0.3", 8080, ["dns=example.com", "vhost=web"],
                       status="warning")],
        f"""
backend {WEB}
    mode http
    balance roundrobin
    option httpchk
    http-check send meth GET uri /
""", id="default-http-check"),
    pytest.param(
        [make_instance("api", "a1", "10.0.0.1", 9000,
                       ["dns=example.com", "vhost=web", "url_prefix=/api",
                        "check=HEAD /health", "balance=leastconn"]),
         make_instance("web", "w1", "10.0.0.2", 8080, ["dns=example.com", "vhost=web"]),
         make_instance("v2", "v1", "10.0.0.3", 8080,
                       ["dns=example.com", "vhost=web", "url_prefix=/api/v2/"])],
        f"""
    use_backend {backend_name("http", "v2")} if {{ var(txn.host) -m str web.example.com }} {{ path -m str /api/v2 }} || {{ var(txn.host) -m str web.example.com }} {{ path_beg /api/v2/ }}
    use_backend {API} if {{ var(txn.host) -m str web.example.com }} {{ path -m str /api }} || {{ var(txn.host) -m str web.example.com }} {{ path_beg /api/ }}
    use_backend {WEB} if {{ var(txn.host) -m str web.example.com }}
    default_backend be_no_route
""", id="longest-prefix-first-rest-last"),
    pytest.param(
        [make_instance("api", "a1", "10.0.0.1", 9000,
                       ["dns=example.com", "vhost=api", "check=HEAD /health",
                        "balance=leastconn"])],
        f"""
backend {API}
    mode http
    balance leastconn
    option httpchk
    http-check send meth HEAD uri /health
    server s1 10.0.0.1:9000 check # {key("api", "a1")}
    server s2 127.0.0.1:1 check disabled
    server s3 127.0.0.1:1 check disabled
    server s4 127.0.0.1:1 check disabled
""", id="check-and-balance"),
    pytest.param(
        [make_instance("db", "d1", "10.0.0.1", 5432, ["tcp=15432", "check=disabled"])],
        f"""
frontend fe_tcp_15432
    bind 127.0.0.1:15432
    mode tcp
    default_backend {DB}

backend {DB}
    mode tcp
    balance roundrobin
    server s1 10.0.0.1:5432 # {key("db", "d1")}
    server s2 127.0.0.1:1 disabled
""", id="tcp-check-disabled"),
    pytest.param(
        [make_instance("db", "d1", "fd00::5", 5432, ["tcp=15432"])],
        f"    server s1 ipv6@fd00::5:5432 check # {key('db', 'd1')}\n", id="ipv6-server"),
]


@pytest.mark.parametrize(("instances", "fragment"), CASES)
def test_rendered_fragment(instances, fragment):
    assert fragment.lstrip("\n") in config(instances)


def test_server_states_follow_health():
    text = config([
        make_instance("web", "w1", "10.0.0.1", 8080, ["dns=example.com", "vhost=web"]),
        make_instance("web", "w2", "10.0.0.2", 8080, ["dns=example.com", "vhost=web"],
                      status="critical"),
        make_instance("web", "w3", "10.0.0.3", 8080, ["dns=example.com", "vhost=web"],
                      status="warning")])
    lines = {ln.split(" # ")[1]: ln.split(" # ")[0].split(None, 2)[2]
             for ln in text.splitlines() if " # i." in ln}
    assert lines == {key("web", "w1"): "10.0.0.1:8080 check",
                     key("web", "w2"): "10.0.0.2:8080 check disabled",
                     key("web", "w3"): "10.0.0.3:8080 check weight 0"}


def test_same_state_same_bytes_whatever_the_order():
    instances = [make_instance(f"svc{i % 7}", f"i{i}", f"10.0.{i // 250}.{i % 250}", 8000 + i,
                               ["dns=example.com", f"vhost=svc{i % 7}",
                                f"url_prefix=/p{i % 3}"], create_index=i)
                 for i in range(60)]
    first = config(instances)
    for seed in range(5):
        shuffled = list(instances)
        random.Random(seed).shuffle(shuffled)
        assert config(shuffled) == first


def test_empty_catalog_renders_status_frontend_only():
    text = config([])
    assert "frontend fe_status\n    bind unix@/run/sb/status.sock\n" in text
    assert text.count("frontend ") == 1
    assert text.endswith("no-route\n")


def test_terminating_https_lists_covering_certificates_only():
    certs = (Certificate("/certs/a.pem", ("*.example.com",), "aa"),
             Certificate("/certs/b.pem", ("other.org",), "bb"))
    text = config([make_instance("web", "w1", "10.0.0.1", 8080,
                                 ["dns=example.com", "vhost=web", "https=8443"])],
                  certificates=certs)
    assert "    bind 127.0.0.1:8443 ssl crt /certs/a.pem\n" in text
    assert "X-Forwarded-Proto https" in text


SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
16394           master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4
# workers
16480           worker          0               0d00h00m01s     2.6.12-1+deb12u4
# old workers
16411           worker          1               0d00h00m10s     2.6.12-1+deb12u4
# programs

"""


def test_parse_show_proc():
    from switchboard.procinfo import ProcInfo, parse_show_proc
    assert parse_show_proc(SHOW_PROC) == ProcInfo(master=16394, reloads=2, failed=1,
                                                  workers=(16480,), old_workers=(16411,))
    with pytest.raises(ValueError):
        parse_show_proc("Unknown command.\n")
