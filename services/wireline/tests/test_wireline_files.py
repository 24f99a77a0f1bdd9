"""wireline.ini as data, the app's compose files and the rendered stack, as tables."""

from __future__ import annotations

import io
import tarfile

import pytest
import yaml

from wireline.appfiles import AppError, BuildSpec, load_app
from wireline.ini import IniError, WirelineIni, parse_ini, parse_scale
from wireline.stack import pinned, render_stack, rescale, update_order

REG = "127.0.0.1:5000"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, expected", [
    ("", WirelineIni()),
    ("# c\n\nBUILD=N\nPUSH='y'\nDEPLOY=\"No\"\n", WirelineIni(build=False, push=True,
                                                           deploy=False)),
    ("SCALE=\"web=2 worker=0\"", WirelineIni(scale={"web": 2, "worker": 0})),
    ("export SCALE=web=3,db=1 # comment", WirelineIni(scale={"web": 3, "db": 1})),
    ("YAML_DEPLOY=ops/deploy.yaml\nYAML_BUILD=ops/build.yaml\nCOMPOSE=c.yaml",
     WirelineIni(yaml_deploy="ops/deploy.yaml", yaml_build="ops/build.yaml",
                 compose="c.yaml")),
    ("REGISTRY='evil:5000'\nDOCKER_HOST_DEPLOY=tcp://x:4242",
     WirelineIni(warnings=("wireline.ini: REGISTRY is set by the operator; ignored",
                           "wireline.ini: DOCKER_HOST_DEPLOY is set by the operator; "
                           "ignored"))),
])
def test_ini_parsed(text, expected):
    assert parse_ini(text) == expected


@pytest.mark.parametrize("text, message", [
    ("BUILD=$(id)", "wireline.ini line 1: quotes, '$', '`' and '\\' are not allowed in values "
                    "(the file is data, not a script)"),
    ("SCALE=`id`", "wireline.ini line 1: quotes, '$', '`' and '\\' are not allowed in values "
                   "(the file is data, not a script)"),
    ("\nrm -rf /", "wireline.ini line 2: expected KEY=VALUE"),
    ("BUILD=maybe", "wireline.ini line 1: BUILD must be Y or N, got 'maybe'"),
    ("FOO=1", "wireline.ini line 1: unknown key FOO"),
    ("SCALE=web=two", "wireline.ini line 1: SCALE: 'web=two' is not service=replicas (0..100)"),
    ("SCALE=web=101", "wireline.ini line 1: SCALE: 'web=101' is not service=replicas "
                      "(0..100)"),
    ("YAML_DEPLOY=../etc/passwd", "wireline.ini line 1: YAML_DEPLOY must be a relative path "
                                  "inside the repository"),
    ("COMPOSE=/etc/x.yaml", "wireline.ini line 1: COMPOSE must be a relative path inside the "
                            "repository"),
])
def test_ini_refused(text, message):
    with pytest.raises(IniError) as err:
        parse_ini(text)
    assert str(err.value) == message


def test_scale_words():
    assert parse_scale(" a=1,b=2  c=0 ") == {"a": 1, "b": 2, "c": 0}


DEPLOY = """
version: "3.8"
services:
  web:
    image: whatever/ignored
    environment: {SERVICE_NAME: ticker, SERVICE_TAGS: "dns=example.test,vhost=ticker,http=80"}
    labels: [a=b]
    ports: ["8080:80", {target: 81, published: 8081, mode: host}]
    healthcheck: {test: ["CMD", "true"], interval: 1s, retries: 2}
    deploy: {replicas: 2, update_config: {order: stop-first}}
  cache:
    image: 127.0.0.1:5000/shared/redis:7
    volumes: ["data:/data"]
volumes:
  data: {}
"""
BUILD = """
services:
  web: {build: {context: app, dockerfile: docker/Dockerfile, args: {V: 1}}, image: x}
"""


def test_pair_loaded():
    spec = load_app({"deploy.yaml": DEPLOY, "build.yaml": BUILD}, WirelineIni(), registry=REG)
    assert spec.files == ("deploy.yaml", "build.yaml")
    web, cache = spec.services["web"], spec.services["cache"]
    assert web.build == BuildSpec(context="app", dockerfile="app/docker/Dockerfile",
                                  args=(("V", "1"),))
    assert web.config["ports"] == [
        {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"},
        {"target": 81, "published": 8081, "protocol": "tcp", "mode": "host"}]
    assert web.config["labels"] == {"a": "b"}
    assert cache.build is None and cache.image == "127.0.0.1:5000/shared/redis:7"
    assert cache.config["volumes"] == [{"type": "volume", "source": "data", "target": "/data",
                                        "read_only": False}]
    assert spec.notes == (
        "service web: deploy.update_config is set by wireline; ignored",
        "service web: image 'whatever/ignored' replaced by wireline's registry name")


def test_single_compose_file():
    text = "services:\n  web:\n    build: .\n"
    spec = load_app({"compose.yaml": text}, WirelineIni(), registry=REG)
    assert spec.services["web"].build == BuildSpec(context=".", dockerfile="Dockerfile")
    assert spec.files == ("compose.yaml",)


def _one(service: str, extra: str = "") -> dict:
    return {"compose.yaml": "services:\n  web:\n" + service + extra}


@pytest.mark.parametrize("files, message", [
    ({}, "no deploy.yaml (+ build.yaml) and no compose file (compose.yaml, compose.yml, "
         "docker-compose.yaml, docker-compose.yml) at the pushed commit"),
    ({"compose.yaml": "services: ["}, None),
    (_one("    build: .\n    privileged: true\n"),
     "service 'web': key 'privileged' is not allowed by wireline"),
    (_one("    build: .\n    network_mode: host\n"),
     "service 'web': key 'network_mode' is not allowed by wireline"),
    (_one("    build: .\n    volumes: ['/var/run/docker.sock:/s']\n"),
     "service 'web': volumes: '/var/run/docker.sock:/s': only named volumes (name:/path[:ro]); "
     "bind mounts are refused"),
    (_one("    build: .\n    volumes: [{type: bind, source: /, target: /h}]\n"),
     "service 'web': volumes: only named volumes and tmpfs; 'bind' is refused"),
    (_one("    build: ../other\n"), "service 'web': build.context: '../other' leaves the "
                                     "repository"),
    (_one("    build: {context: ., dockerfile: ../../D}\n"),
     "service 'web': build.dockerfile: '../../D' leaves the repository"),
    (_one("    image: docker.io/library/nginx\n"),
     "service 'web': image 'docker.io/library/nginx' is not in the operator's registry "
     "127.0.0.1:5000; add build: instead"),
    (_one("    build: .\n    ports: ['127.0.0.1:80:80']\n"),
     "service 'web': ports: '127.0.0.1:80:80': a host IP cannot be set on Swarm"),
    (_one("    build: .\n    networks: [host]\n", "networks:\n  host: {external: true}\n"),
     "networks 'host': external networks are refused (the operator allows: none)"),
    (_one("    build: .\n    volumes: ['x:/x']\n", "volumes:\n  x: {driver_opts: {o: bind}}\n"),
     "volumes 'x': only driver may be set"),
    ({"compose.yaml": "services:\n  Web_1:\n    build: .\n"},
     "service name 'Web_1': lowercase letters and digits, single '-' between them"),
    ({"compose.yaml": "services:\n  web:\n    build: .\nsecrets:\n  s: {external: true}\n"},
     "top-level key 'secrets' is not allowed by wireline"),
])
def test_refused_app_files(files, message):
    with pytest.raises(AppError) as err:
        load_app(files, WirelineIni(), registry=REG)
    if message is not None:
        assert str(err.value) == message


def test_scale_must_name_a_service():
    with pytest.raises(AppError) as err:
        load_app(_one("    build: .\n"), WirelineIni(scale={"db": 2}), registry=REG)
    assert str(err.value) == "SCALE names service 'db', which the app does not have"


def test_allowed_external_network():
    spec = load_app(_one("    build: .\n    networks: [edge]\n",
                         "networks:\n  edge: {external: true}\n"),
                    WirelineIni(), registry=REG, allowed_networks=("edge",))
    assert spec.networks == {"edge": {"external": True}}


@pytest.mark.parametrize("config, expected", [
    ({}, ("start-first", "")),
    ({"ports": [{"target": 80, "published": 8080, "mode": "ingress"}]}, ("start-first", "")),
    ({"ports": [{"target": 80, "published": 8080, "protocol": "tcp", "mode": "host"}]},
     ("stop-first", "publishes host port 8080/tcp: two tasks cannot bind it on one node")),
    ({"volumes": [{"type": "volume", "source": "data", "target": "/d"}]},
     ("stop-first", "mounts volume 'data': two tasks must not write it at once")),
    ({"volumes": [{"type": "tmpfs", "target": "/t"}]}, ("start-first", "")),
])
def test_update_order(config, expected):
    assert update_order(config) == expected


def test_stack_rendered():
    spec = load_app({"deploy.yaml": DEPLOY, "build.yaml": BUILD}, WirelineIni(), registry=REG)
    images = {"web": pinned(f"{REG}/ticker/web", "a" * 40, DIGEST),
              "cache": pinned("127.0.0.1:5000/shared/redis", "7", DIGEST)}
    plan = render_stack(spec, images, app="ticker", scale={"cache": 3}, monitor_s=5,
                        labels={"unify.wireline.release": "4"})
    assert plan.replicas == {"cache": 3, "web": 2}
    assert plan.orders["web"][0] == "stop-first"
    assert plan.orders["cache"] == ("stop-first", "mounts volume 'data': two tasks must not "
                                                  "write it at once")
    assert yaml.safe_load(plan.text) == plan.stack
    web = plan.stack["services"]["web"]
    assert web["image"] == f"{REG}/ticker/web:{'a' * 40}@{DIGEST}"
    assert web["deploy"] == {
        "replicas": 2, "labels": {"unify.wireline.release": "4"},
        "update_config": {"parallelism": 1, "delay": "0s", "order": "stop-first",
                          "failure_action": "rollback", "monitor": "5s",
                          "max_failure_ratio": 0},
        "rollback_config": {"parallelism": 1, "order": "stop-first",
                            "failure_action": "pause", "monitor": "5s"}}
    assert web["environment"]["SERVICE_TAGS"] == "dns=example.test,vhost=ticker,http=80"
    assert plan.stack["volumes"] == {"data": {}}
    text, replicas = rescale(plan.text, {"web": 5}, labels={"unify.wireline.release": "5"})
    assert replicas == {"cache": 3, "web": 5}
    assert yaml.safe_load(text)["services"]["web"]["deploy"]["replicas"] == 5
    assert yaml.safe_load(text)["services"]["cache"]["deploy"]["labels"] == {
        "unify.wireline.release": "5"}
    with pytest.raises(ValueError):
        rescale(plan.text, {"nope": 1})
    with pytest.raises(ValueError):
        render_stack(spec, {"web": "x:1", "cache": images["cache"]}, app="t", scale={})


def _tar(*members) -> io.BytesIO:
    """A tar stream of ``(name, kind, payload)``: kind ``file`` (payload: content), ``dir``,
    ``sym``/``hard`` (payload: link target), ``fifo``."""

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = io.BytesIO(payload.encode())
                info.size, info.mode = len(payload), 0o4777
            else:
                info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                             "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = payload or ""
            tar.addfile(info, data)
    buf.seek(0)
    return buf


def test_extract_tree_keeps_files_dirs_and_inner_links(tmp_path):
    from wireline.pipeline import extract_tree

    dest = tmp_path / "tree"
    dest.mkdir()
    extract_tree(_tar(("site", "dir", None), ("site/index.html", "file", "hi\n"),
                      ("latest", "sym", "site"), ("latest/extra.txt", "file", "x"),
                      ("site/up", "sym", "../site/index.html")), dest)
    assert (dest / "site" / "index.html").read_text() == "hi\n"
    assert (dest / "site" / "extra.txt").read_text() == "x"  # written through the inner link
    assert (dest / "site" / "up").read_text() == "hi\n"
    assert oct((dest / "site" / "index.html").stat().st_mode & 0o7777) == "0o755"


@pytest.mark.parametrize("members, message", [
    ([("/etc/x", "file", "x")], "refused path '/etc/x' in the pushed tree"),
    ([("a/../../x", "file", "x")], "refused path 'a/../../x' in the pushed tree"),
    ([("out", "sym", "/etc")], "refused link 'out' -> '/etc': it points outside the tree"),
    ([("out", "sym", "../x")], "refused link 'out' -> '../x': it points outside the tree"),
    ([("a", "sym", "."), ("b", "sym", "a/..")],
     "refused link 'b' -> 'a/..': it points outside the tree"),
    ([("a", "sym", "b/.."), ("b", "sym", ".")],
     "refused link 'a': it points outside the tree"),
    ([("site", "file", "x"), ("h", "hard", "site")],
     "refused 'h': only files, directories and symbolic links are extracted"),
    ([("p", "fifo", None)], "refused 'p': only files, directories and symbolic links are "
     "extracted"),
])
def test_extract_tree_refuses_what_leaves_the_tree(tmp_path, members, message):
    from wireline.pipeline import extract_tree

    dest = tmp_path / "tree"
    dest.mkdir()
    with pytest.raises(AppError) as err:
        extract_tree(_tar(*members), dest)
    assert str(err.value) == message
    assert not (tmp_path / "x").exists()
