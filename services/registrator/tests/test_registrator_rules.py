"""registrator's rules as tables: container inspect data -> wanted Consul registrations."""

from __future__ import annotations

from typing import Any

import pytest

from registrator.rules import (
    DIGEST,
    MARKER,
    Check,
    Registration,
    Rules,
    image_base_name,
    wanted_for_container,
)

NODE = "n1"
RULES = Rules(node=NODE)


def container(*, name: str = "web", image: str = "reg:5000/team/shop:1.2", env=(),
              labels: dict | None = None, ports: dict | None = None, exposed=(),
              network_mode: str = "default", ip: str = "172.17.0.5",
              running: bool = True) -> dict[str, Any]:
    """An inspect answer with the fields the rules read."""
    return {
        "Id": "c0ffee" * 10 + "abcd", "Name": "/" + name,
        "State": {"Running": running, "Restarting": False},
        "Config": {"Image": image, "Env": list(env), "Labels": labels or {},
                   "ExposedPorts": {key: {} for key in exposed}},
        "HostConfig": {"NetworkMode": network_mode},
        "NetworkSettings": {"IPAddress": ip, "Ports": ports or {}},
    }


def bind(port: str, host_ip: str = "0.0.0.0") -> list[dict]:
    """dockerd 20.10 publishes each port on IPv4 and IPv6."""
    return [{"HostIp": host_ip, "HostPort": port}, {"HostIp": "::", "HostPort": port}]


def reg(service_id: str, name: str, address: str, port: int, tags=(), meta=None,
        checks=()) -> tuple:
    """The fields of a registration except the digest (checked separately)."""
    return (service_id, name, address, port, tuple(tags), {**(meta or {}), MARKER: NODE},
            tuple(checks))


def fields(registration: Registration) -> tuple:
    meta = dict(registration.meta)
    assert len(meta.pop(DIGEST)) == 16
    return (registration.id, registration.name, registration.address, registration.port,
            registration.tags, meta, registration.checks)


def wanted(inspect, rules=RULES, service_labels=None):
    return wanted_for_container(inspect, rules=rules, node_address="10.0.0.7",
                                service_labels=service_labels)


CASES = [
    ("one published port: image base name, node address, host port",
     container(ports={"8000/tcp": bind("32768")}, exposed=["8000/tcp"]), RULES, None,
     [reg("n1:web:8000", "shop", "10.0.0.7", 32768)]),
    ("exposed but unpublished ports are not services",
     container(ports={"8000/tcp": bind("32768"), "9000/tcp": None},
               exposed=["8000/tcp", "9000/tcp"]), RULES, None,
     [reg("n1:web:8000", "shop", "10.0.0.7", 32768)]),
    ("several ports: -<exposed port> suffix, udp tag and :udp ID",
     container(ports={"53/udp": bind("5353"), "80/tcp": bind("8080")}), RULES, None,
     [reg("n1:web:53:udp", "shop-53", "10.0.0.7", 5353, tags=["udp"]),
      reg("n1:web:80", "shop-80", "10.0.0.7", 8080)]),
    ("SERVICE_NAME keeps the suffix, SERVICE_<port>_NAME does not",
     container(env=["SERVICE_NAME=api", "SERVICE_443_NAME=secure"],
               ports={"80/tcp": bind("8080"), "443/tcp": bind("8443")}), RULES, None,
     [reg("n1:web:80", "api-80", "10.0.0.7", 8080),
      reg("n1:web:443", "secure", "10.0.0.7", 8443)]),
    ("tags, per-port tags, meta lower-cased, -tags setting appended",
     container(env=["SERVICE_TAGS=a, b,,a", "SERVICE_80_TAGS=x,y", "SERVICE_REGION=eu",
                    "SERVICE_80_OWNER_TEAM=shop"],
               ports={"80/tcp": bind("8080")}), Rules(node=NODE, force_tags=("edge", "x")),
     None,
     [reg("n1:web:80", "shop", "10.0.0.7", 8080, tags=["x", "y", "edge"],
          meta={"region": "eu", "owner_team": "shop"})]),
    ("labels win over env; Swarm service labels between the two",
     container(env=["SERVICE_NAME=from-env", "SERVICE_TAGS=env", "SERVICE_TIER=env"],
               labels={"SERVICE_TAGS": "label"}, ports={"80/tcp": bind("8080")}), RULES,
     {"SERVICE_NAME": "from-service", "SERVICE_TAGS": "service"},
     [reg("n1:web:80", "from-service", "10.0.0.7", 8080, tags=["label"],
          meta={"tier": "env"})]),
    ("SERVICE_IGNORE skips every port, SERVICE_<port>_IGNORE one",
     container(env=["SERVICE_443_IGNORE=true"],
               ports={"80/tcp": bind("8080"), "443/tcp": bind("8443")}), RULES, None,
     [reg("n1:web:80", "shop-80", "10.0.0.7", 8080)]),
    ("SERVICE_IGNORE on the container",
     container(labels={"SERVICE_IGNORE": "1"}, ports={"80/tcp": bind("8080")}), RULES, None,
     []),
    ("a specific host IP of the binding is registered; -ip wins over everything",
     container(ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}), RULES, None,
     [reg("n1:web:80", "shop", "127.0.0.1", 8080)]),
    ("-ip setting",
     container(ports={"80/tcp": bind("8080")}), Rules(node=NODE, ip="192.0.2.1"), None,
     [reg("n1:web:80", "shop", "192.0.2.1", 8080)]),
    ("-internal: container address and exposed port, published or not",
     container(ports={"80/tcp": bind("8080"), "9000/tcp": None}, exposed=["80/tcp", "9000/tcp"]),
     Rules(node=NODE, internal=True, ip="192.0.2.1"), None,
     [reg("n1:web:80", "shop-80", "172.17.0.5", 80),
      reg("n1:web:9000", "shop-9000", "172.17.0.5", 9000)]),
    ("-internal on a Swarm task: its network address",
     {**container(exposed=["8000/tcp"], ip=""),
      "NetworkSettings": {"IPAddress": "", "Ports": {}, "Networks": {
          "ingress": {"IPAddress": "10.255.0.9"}, "app-net": {"IPAddress": "10.0.1.4"}}}},
     Rules(node=NODE, internal=True), None,
     [reg("n1:web:8000", "shop", "10.0.1.4", 8000)]),
    ("host network mode: exposed ports at the node address",
     container(exposed=["9100/tcp"], network_mode="host", ip=""), RULES, None,
     [reg("n1:web:9100", "shop", "10.0.0.7", 9100)]),
    ("not running: nothing",
     container(ports={"80/tcp": bind("8080")}, running=False), RULES, None, []),
    ("no ports: nothing",
     container(), RULES, None, []),
    ("HTTP check with interval and timeout on the registered address",
     container(labels={"SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "5s",
                       "SERVICE_CHECK_TIMEOUT": "1s"}, ports={"80/tcp": bind("8080")}),
     RULES, None,
     [reg("n1:web:80", "shop", "10.0.0.7", 8080,
          checks=[Check(HTTP="http://10.0.0.7:8080/health", Interval="5s", Timeout="1s")])]),
    ("per-port HTTPS check, default interval, tls skip verify, method, initial status",
     container(env=["SERVICE_443_CHECK_HTTPS=/ok", "SERVICE_443_CHECK_TLS_SKIP_VERIFY=true",
                    "SERVICE_443_CHECK_METHOD=HEAD", "SERVICE_CHECK_INITIAL_STATUS=passing"],
               ports={"443/tcp": bind("8443"), "80/tcp": bind("8080")}), RULES, None,
     [reg("n1:web:80", "shop-80", "10.0.0.7", 8080),
      reg("n1:web:443", "shop-443", "10.0.0.7", 8443,
          checks=[Check(HTTP="https://10.0.0.7:8443/ok", Method="HEAD", TLSSkipVerify=True,
                        Interval="10s", Status="passing")])]),
    ("TCP check, and TTL check with deregister-after",
     container(env=["SERVICE_80_CHECK_TCP=true", "SERVICE_53_CHECK_TTL=30s",
                    "SERVICE_53_CHECK_DEREGISTER_AFTER=1m30s"],
               ports={"80/tcp": bind("8080"), "53/udp": bind("5353")}), RULES, None,
     [reg("n1:web:53:udp", "shop-53", "10.0.0.7", 5353, tags=["udp"],
          checks=[Check(TTL="30s", DeregisterCriticalServiceAfter="1m30s")]),
      reg("n1:web:80", "shop-80", "10.0.0.7", 8080,
          checks=[Check(TCP="10.0.0.7:8080", Interval="10s")])]),
    ("SERVICE_ID is not honoured; SERVICE_<other port>_* does not apply",
     container(env=["SERVICE_ID=mine", "SERVICE_9999_NAME=other"],
               ports={"80/tcp": bind("8080")}), RULES, None,
     [reg("n1:web:80", "shop", "10.0.0.7", 8080)]),
    ("lower-case service_ keys are not registrator's",
     container(env=["service_name=x", "NOT_SERVICE_NAME=y"], ports={"80/tcp": bind("8080")}),
     RULES, None, [reg("n1:web:80", "shop", "10.0.0.7", 8080)]),
]


@pytest.mark.parametrize("inspect,rules,service_labels,expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_wanted(inspect, rules, service_labels, expected):
    result = wanted(inspect, rules, service_labels)
    assert result.rejected is None
    assert result.container == "web"
    assert [fields(r) for r in result.registrations] == expected


REJECTS = [
    ("interval not a duration", {"SERVICE_CHECK_INTERVAL": "often",
                                 "SERVICE_CHECK_HTTP": "/"},
     "invalid-metadata", "SERVICE_CHECK_INTERVAL='often' is not a duration such as 10s or 1m30s"),
    ("port in a key not a number", {"SERVICE_8o_NAME": "x"},
     "invalid-port", "SERVICE_8o_NAME: port '8o' is not a number in 1..65535"),
    ("port out of range", {"SERVICE_70000_TAGS": "x"},
     "invalid-port", "SERVICE_70000_TAGS: port '70000' is not a number in 1..65535"),
    ("name Consul refuses", {"SERVICE_NAME": "bad name!"},
     "invalid-name", "SERVICE_NAME='bad name!' is not a service name Consul can serve "
     "(letters, digits, '.', '_' and '-', at most 128, starting with a letter or digit)"),
    ("per-port name Consul refuses", {"SERVICE_80_NAME": "-x"},
     "invalid-name", "SERVICE_80_NAME='-x' is not a service name Consul can serve "
     "(letters, digits, '.', '_' and '-', at most 128, starting with a letter or digit)"),
    ("meta key Consul refuses", {"SERVICE_A.B": "1"},
     "invalid-metadata", "SERVICE_A.B: meta key 'a.b' is not allowed by Consul (letters, "
     "digits, _ and -, no consul- prefix) or is reserved"),
    ("reserved meta key", {"SERVICE_CONSUL-X": "1"},
     "invalid-metadata", "SERVICE_CONSUL-X: meta key 'consul-x' is not allowed by Consul "
     "(letters, digits, _ and -, no consul- prefix) or is reserved"),
    ("marker cannot be forged", {"SERVICE_UNIFY-REGISTRATOR": "other"},
     "invalid-metadata", "SERVICE_UNIFY-REGISTRATOR: meta key 'unify-registrator' is not "
     "allowed by Consul (letters, digits, _ and -, no consul- prefix) or is reserved"),
    ("script checks refused", {"SERVICE_CHECK_SCRIPT": "rm -rf /"},
     "invalid-metadata", "SERVICE_CHECK_SCRIPT: script, docker and gRPC checks are not "
     "supported (a label must never run a command on the Consul agent)"),
    ("unknown check key", {"SERVICE_CHECK_HTTPZ": "/"},
     "invalid-metadata", "SERVICE_CHECK_HTTPZ: unknown check setting"),
    ("check path without slash", {"SERVICE_CHECK_HTTP": "health"},
     "invalid-metadata", "SERVICE_CHECK_HTTP='health' is not a URL path starting with /"),
    ("bad initial status", {"SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_INITIAL_STATUS": "ok"},
     "invalid-metadata", "SERVICE_CHECK_INITIAL_STATUS='ok' is not one of passing, warning, "
     "critical"),
    ("tag with a control character", {"SERVICE_TAGS": "a,b\nc"},
     "invalid-metadata", "SERVICE_TAGS: tag 'b\\nc' has control characters or is longer than "
     "255"),
    ("meta value too long", {"SERVICE_NOTE": "x" * 513},
     "invalid-metadata", "SERVICE_NOTE: value longer than 512 characters"),
]


@pytest.mark.parametrize("labels,reason,message", [case[1:] for case in REJECTS],
                         ids=[case[0] for case in REJECTS])
def test_rejected(labels, reason, message):
    result = wanted(container(labels=labels, ports={"80/tcp": bind("8080")}))
    assert result.registrations == ()
    assert (result.rejected.reason, result.rejected.message) == (reason, message)


@pytest.mark.parametrize("ports,message", [
    ({"http/tcp": bind("8080")}, "port 'http/tcp' is not a number in 1..65535"),
    ({"80/tcp": bind("80x")}, "host port '80x' of 80/tcp is not a number in 1..65535"),
])
def test_rejected_ports(ports, message):
    result = wanted(container(ports=ports))
    assert (result.rejected.reason, result.rejected.message) == ("invalid-port", message)


@pytest.mark.parametrize("image,base", [
    ("reg:5000/team/shop:1.2@sha256:" + "a" * 64, "shop"),
    ("nginx", "nginx"),
    ("localhost:5000/app", "app"),
    ("unify-local/rg-test-http:1", "rg-test-http"),
])
def test_image_base_name(image, base):
    assert image_base_name(image) == base


def test_digest_follows_content():
    one = wanted(container(ports={"80/tcp": bind("8080")})).registrations[0]
    same = wanted(container(ports={"80/tcp": bind("8080")})).registrations[0]
    moved = wanted(container(ports={"80/tcp": bind("8081")})).registrations[0]
    tagged = wanted(container(env=["SERVICE_TAGS=t"], ports={"80/tcp": bind("8080")}))
    assert one.digest == same.digest
    assert len({one.digest, moved.digest, tagged.registrations[0].digest}) == 3


def test_consul_body():
    registration = wanted(container(
        labels={"SERVICE_CHECK_HTTP": "/h", "SERVICE_TAGS": "a"},
        ports={"80/tcp": bind("8080")})).registrations[0]
    assert registration.as_consul() == {
        "ID": "n1:web:80", "Name": "shop", "Address": "10.0.0.7", "Port": 8080, "Tags": ["a"],
        "Meta": {MARKER: NODE, DIGEST: registration.digest},
        "Checks": [{"HTTP": "http://10.0.0.7:8080/h", "Interval": "10s"}]}
