"""The app's compose files, read and checked before anything is built.

Two layouts (the first one found wins):

* the original pair: ``deploy.yaml`` (a compose file: images, labels, ports, environment,
  healthchecks, deploy options) and ``build.yaml`` (an overlay giving ``build:`` per service);
  names configurable with ``YAML_DEPLOY``/``YAML_BUILD`` in ``wireline.ini``;
* one compose file with ``build:`` (``COMPOSE`` in ``wireline.ini``, else the first of
  ``compose.yaml``, ``compose.yml``, ``docker-compose.yaml``, ``docker-compose.yml``).

Keys follow the Compose file reference (version 3 / the Compose Specification). The repository
is hostile input, so only an allow-list of service keys passes (:data:`SERVICE_KEYS`); anything
that reaches the host (bind mounts, ``privileged``, ``cap_add``, devices, host network or PID
namespace, secrets and configs of other apps, ``env_file`` read at deploy time) is refused
with a message naming the service and key. Images of services without ``build:`` must live
in the operator's registry: the repository never names a registry, engine or Swarm.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from .ini import WirelineIni

__all__ = ["AppError", "AppSpec", "BuildSpec", "ServiceSpec", "COMPOSE_NAMES",
           "SERVICE_KEYS", "candidate_files", "load_app"]

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
SERVICE_KEYS = frozenset({
    "image", "build", "command", "entrypoint", "environment", "labels", "ports",
    "healthcheck", "deploy", "volumes", "networks", "working_dir", "user",
    "stop_grace_period", "stop_signal", "init", "hostname", "read_only", "tmpfs",
})
DEPLOY_KEYS = frozenset({"mode", "replicas", "labels", "resources", "restart_policy",
                         "placement", "update_config", "rollback_config"})
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_FILE_BYTES = 256 * 1024


class AppError(ValueError):
    """The app's files cannot be deployed; the message is shown to the pusher."""


@dataclass(frozen=True)
class BuildSpec:
    """Where to build one image: ``context`` and ``dockerfile`` are normalised paths relative
    to the repository root (never ``..``); ``args`` are build arguments; ``target`` a stage."""

    context: str
    dockerfile: str
    args: tuple[tuple[str, str], ...] = ()
    target: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    """One service: ``config`` is its checked compose mapping without ``build``/``image``;
    ``build`` is set when wireline builds its image, else ``image`` names an image in the
    operator's registry."""

    name: str
    config: dict
    build: BuildSpec | None = None
    image: str = ""


@dataclass(frozen=True)
class AppSpec:
    """A checked app: services by name, top-level ``networks``/``volumes`` mappings, the
    files it came from and notes for the pusher."""

    services: dict[str, ServiceSpec]
    networks: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def candidate_files(ini: WirelineIni) -> tuple[str, ...]:
    """Every file name :func:`load_app` may read, for the caller to fetch from the tree."""
    return (ini.yaml_deploy, ini.yaml_build, *( (ini.compose,) if ini.compose else ()),
            *COMPOSE_NAMES)


def _safe_path(base: str, rel: object, what: str) -> str:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        raise AppError(f"{what}: must be a relative path inside the repository")
    joined = posixpath.normpath(posixpath.join(base, rel))
    if joined == ".." or joined.startswith("../"):
        raise AppError(f"{what}: {rel!r} leaves the repository")
    return joined


def _load_yaml(name: str, text: str) -> dict:
    if len(text.encode()) > MAX_FILE_BYTES:
        raise AppError(f"{name}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise AppError(f"{name}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise AppError(f"{name}: a compose file needs a 'services' mapping")
    return data


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        pairs = {}
        for item in value:
            if not isinstance(item, str):
                raise AppError(f"{what}: list items must be KEY=VALUE strings")
            key, _, val = item.partition("=")
            pairs[key] = val
        value = pairs
    if not isinstance(value, dict):
        raise AppError(f"{what}: must be a mapping or a KEY=VALUE list")
    result = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _VAR_RE.match(key):
            raise AppError(f"{what}: invalid name {str(key)[:40]!r}")
        if isinstance(val, (dict, list)):
            raise AppError(f"{what}: {key} must be a plain value")
        result[key] = "" if val is None else (str(val).lower() if isinstance(val, bool)
                                              else str(val))
    return result


def _build_spec(service: str, value: object) -> BuildSpec:
    what = f"service {service!r}: build"
    if isinstance(value, str):
        value = {"context": value}
    if not isinstance(value, dict):
        raise AppError(f"{what}: must be a path or a mapping")
    unknown = set(value) - {"context", "dockerfile", "args", "target"}
    if unknown:
        raise AppError(f"{what}: key {sorted(unknown)[0]!r} is not allowed by wireline")
    context = _safe_path(".", value.get("context", "."), f"{what}.context")
    dockerfile = _safe_path(context, value.get("dockerfile", "Dockerfile"),
                            f"{what}.dockerfile")
    target = value.get("target", "")
    if not isinstance(target, str) or (target and not _VAR_RE.match(target)):
        raise AppError(f"{what}.target: invalid stage name")
    args = _string_map(value.get("args"), f"{what}.args")
    return BuildSpec(context=context, dockerfile=dockerfile,
                     args=tuple(sorted(args.items())), target=target)


def _ports(service: str, value: object) -> list[dict]:
    what = f"service {service!r}: ports"
    if not isinstance(value, list):
        raise AppError(f"{what}: must be a list")
    result = []
    for item in value:
        if isinstance(item, (str, int)):
            text = str(item)
            proto = "tcp"
            if "/" in text:
                text, proto = text.split("/", 1)
            parts = text.split(":")
            if len(parts) > 2:
                raise AppError(f"{what}: {item!r}: a host IP cannot be set on Swarm")
            if not all(p.isdigit() for p in parts):
                raise AppError(f"{what}: {item!r} is not [published:]target[/protocol]")
            short: dict[str, int | str] = {"target": int(parts[-1]), "protocol": proto}
            if len(parts) == 2:
                short["published"] = int(parts[0])
            item = short
        if not isinstance(item, dict) or set(item) - {"target", "published", "protocol",
                                                       "mode"}:
            raise AppError(f"{what}: entries take target, published, protocol, mode")
        try:
            numbers = {"target": int(item["target"])}
            if "published" in item:
                numbers["published"] = int(item["published"])
        except (KeyError, TypeError, ValueError):
            raise AppError(f"{what}: target and published must be port numbers") from None
        if not all(0 < p < 65536 for p in numbers.values()):
            raise AppError(f"{what}: ports are 1..65535")
        entry: dict[str, int | str] = dict(numbers)
        protocol = item.get("protocol", "tcp")
        mode = item.get("mode", "ingress")
        if protocol not in ("tcp", "udp") or mode not in ("ingress", "host"):
            raise AppError(f"{what}: protocol is tcp|udp, mode is ingress|host")
        entry.update(protocol=protocol, mode=mode)
        result.append(entry)
    return result


def _volumes(service: str, value: object, declared: dict) -> list[dict]:
    what = f"service {service!r}: volumes"
    if not isinstance(value, list):
        raise AppError(f"{what}: must be a list")
    result: list[dict] = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) not in (2, 3) or parts[0].startswith((".", "/", "~")):
                raise AppError(f"{what}: {item[:60]!r}: only named volumes "
                               "(name:/path[:ro]); bind mounts are refused")
            item = {"type": "volume", "source": parts[0], "target": parts[1],
                    "read_only": len(parts) == 3 and parts[2] == "ro"}
        if not isinstance(item, dict):
            raise AppError(f"{what}: entries are strings or mappings")
        kind = item.get("type", "volume")
        if kind == "tmpfs" and set(item) <= {"type", "target"}:
            result.append({"type": "tmpfs", "target": str(item.get("target", ""))})
            continue
        if kind != "volume" or set(item) - {"type", "source", "target", "read_only"}:
            raise AppError(f"{what}: only named volumes and tmpfs; {kind!r} is refused")
        if item.get("source") not in declared:
            raise AppError(f"{what}: volume {str(item.get('source'))[:40]!r} is not declared "
                           "under top-level 'volumes'")
        target = item.get("target")
        if not isinstance(target, str) or not target.startswith("/"):
            raise AppError(f"{what}: target must be an absolute path in the container")
        result.append({"type": "volume", "source": item["source"], "target": target,
                       "read_only": bool(item.get("read_only", False))})
    return result


def _top_level(data: dict, key: str, allowed_external: tuple[str, ...]) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise AppError(f"top-level {key}: must be a mapping")
    result = {}
    for name, conf in value.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise AppError(f"top-level {key}: invalid name {str(name)[:40]!r}")
        conf = conf or {}
        if not isinstance(conf, dict):
            raise AppError(f"{key} {name!r}: must be a mapping")
        if conf.get("external"):
            if key == "networks" and name in allowed_external and set(conf) <= {"external"}:
                result[name] = {"external": True}
                continue
            raise AppError(f"{key} {name!r}: external {key} are refused (the operator allows: "
                           f"{', '.join(allowed_external) or 'none'})")
        allowed = {"driver", "attachable"} if key == "networks" else {"driver"}
        if set(conf) - allowed:
            raise AppError(f"{key} {name!r}: only {', '.join(sorted(allowed))} may be set")
        if key == "networks" and conf.get("driver", "overlay") != "overlay":
            raise AppError(f"networks {name!r}: only overlay networks on Swarm")
        if key == "volumes" and conf.get("driver", "local") != "local":
            raise AppError(f"volumes {name!r}: only the local driver")
        result[name] = dict(conf)
    return result


def _service(name: str, conf: object, *, build_conf: object, registry: str,
             volumes: dict, networks: dict, notes: list[str]) -> ServiceSpec:
    if not isinstance(name, str) or not _SERVICE_RE.match(name) or len(name) > 63:
        raise AppError(f"service name {str(name)[:40]!r}: lowercase letters and digits, "
                       "single '-' between them")
    if not isinstance(conf, dict):
        raise AppError(f"service {name!r}: must be a mapping")
    unknown = sorted(set(conf) - SERVICE_KEYS)
    if unknown:
        raise AppError(f"service {name!r}: key {unknown[0]!r} is not allowed by wireline")
    out: dict = {}
    for key in ("command", "entrypoint"):
        if key in conf:
            value = conf[key]
            if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
                out[key] = [str(v) for v in value]
            elif isinstance(value, str):
                out[key] = value
            else:
                raise AppError(f"service {name!r}: {key} must be a string or a list")
    for key in ("environment", "labels"):
        if key in conf:
            out[key] = _string_map(conf[key], f"service {name!r}: {key}")
    if "ports" in conf:
        out["ports"] = _ports(name, conf["ports"])
    if "volumes" in conf:
        out["volumes"] = _volumes(name, conf["volumes"], volumes)
    if "healthcheck" in conf:
        check = conf["healthcheck"]
        if not isinstance(check, dict) or set(check) - {"test", "interval", "timeout",
                                                         "retries", "start_period",
                                                         "disable"}:
            raise AppError(f"service {name!r}: healthcheck takes test, interval, timeout, "
                           "retries, start_period, disable")
        out["healthcheck"] = dict(check)
    if "networks" in conf:
        nets = conf["networks"]
        names = list(nets) if isinstance(nets, (list, dict)) else None
        if names is None or any(n not in networks for n in names):
            raise AppError(f"service {name!r}: networks must be declared at top level")
        out["networks"] = nets
    if "deploy" in conf:
        deploy = conf["deploy"] or {}
        if not isinstance(deploy, dict) or set(deploy) - DEPLOY_KEYS:
            raise AppError(f"service {name!r}: deploy takes {', '.join(sorted(DEPLOY_KEYS))}")
        deploy = dict(deploy)
        for key in ("update_config", "rollback_config"):
            if deploy.pop(key, None) is not None:
                notes.append(f"service {name}: deploy.{key} is set by wireline; ignored")
        if "labels" in deploy:
            deploy["labels"] = _string_map(deploy["labels"], f"service {name!r}: deploy.labels")
        if deploy.get("mode", "replicated") not in ("replicated", "global"):
            raise AppError(f"service {name!r}: deploy.mode is replicated or global")
        out["deploy"] = deploy
    for key in ("working_dir", "user", "stop_grace_period", "stop_signal", "hostname"):
        if key in conf:
            if not isinstance(conf[key], (str, int)):
                raise AppError(f"service {name!r}: {key} must be a string")
            out[key] = str(conf[key])
    for key in ("init", "read_only"):
        if key in conf:
            out[key] = bool(conf[key])
    if "tmpfs" in conf:
        tmpfs = conf["tmpfs"]
        out["tmpfs"] = [tmpfs] if isinstance(tmpfs, str) else [str(t) for t in tmpfs]
    build_value = build_conf if build_conf is not None else conf.get("build")
    if build_value is not None:
        if conf.get("image"):
            notes.append(f"service {name}: image {str(conf['image'])[:80]!r} replaced by "
                         "wireline's registry name")
        return ServiceSpec(name=name, config=out, build=_build_spec(name, build_value))
    image = conf.get("image")
    if not isinstance(image, str) or not image:
        raise AppError(f"service {name!r}: needs build: (or an image in the operator's "
                       "registry)")
    if not registry or not image.startswith(registry + "/"):
        raise AppError(f"service {name!r}: image {image[:80]!r} is not in the operator's "
                       f"registry {registry or '(none set)'}; add build: instead")
    return ServiceSpec(name=name, config=out, image=image)


def load_app(files: Mapping[str, str], ini: WirelineIni, *, registry: str,
             allowed_networks: tuple[str, ...] = ()) -> AppSpec:
    """Check the app's compose files (see the module doc).

    :param files: text of the files present at the pushed commit, by path (only names from
        :func:`candidate_files` are looked at).
    :param registry: the operator's registry host[:port] (images without ``build:`` must be
        under it).
    :param allowed_networks: external networks apps may join (operator setting).
    :raises AppError: no compose file, invalid YAML, or a refused key (message for the pusher).
    """
    notes: list[str] = []
    overlay: dict = {}
    if ini.yaml_deploy in files:
        used = [ini.yaml_deploy]
        data = _load_yaml(ini.yaml_deploy, files[ini.yaml_deploy])
        if ini.yaml_build in files:
            used.append(ini.yaml_build)
            build_data = _load_yaml(ini.yaml_build, files[ini.yaml_build])
            for svc, conf in build_data["services"].items():
                if svc not in data["services"]:
                    raise AppError(f"{ini.yaml_build}: service {str(svc)[:40]!r} is not in "
                                   f"{ini.yaml_deploy}")
                if not isinstance(conf, dict) or "build" not in conf:
                    raise AppError(f"{ini.yaml_build}: service {svc!r} needs build:")
                extra = sorted(set(conf) - {"build", "image"})
                if extra:
                    notes.append(f"{ini.yaml_build}: service {svc}: only build: is used; "
                                 f"{', '.join(extra)} ignored")
                overlay[svc] = conf["build"]
    else:
        names = ((ini.compose,) if ini.compose else ()) + COMPOSE_NAMES
        found = next((n for n in names if n in files), None)
        if found is None:
            raise AppError(f"no {ini.yaml_deploy} (+ {ini.yaml_build}) and no compose file "
                           f"({', '.join(COMPOSE_NAMES)}) at the pushed commit")
        used = [found]
        data = _load_yaml(found, files[found])
    unknown_top = sorted(set(data) - {"version", "services", "networks", "volumes"})
    if unknown_top:
        raise AppError(f"top-level key {unknown_top[0]!r} is not allowed by wireline")
    networks = _top_level(data, "networks", allowed_networks)
    volumes = _top_level(data, "volumes", ())
    if not data["services"]:
        raise AppError("no services")
    services = {}
    for name, conf in data["services"].items():
        services[name] = _service(name, conf, build_conf=overlay.get(name), registry=registry,
                                  volumes=volumes, networks=networks, notes=notes)
    for svc in ini.scale:
        if svc not in services:
            raise AppError(f"SCALE names service {svc!r}, which the app does not have")
        if (services[svc].config.get("deploy") or {}).get("mode") == "global":
            raise AppError(f"SCALE: service {svc!r} is global")
    return AppSpec(services=services, networks=networks, volumes=volumes, files=tuple(used),
                   notes=tuple(notes))
