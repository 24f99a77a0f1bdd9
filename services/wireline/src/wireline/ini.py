"""``wireline.ini``: the app's deploy switches, read as data and never executed.

The original wireline sourced this file with bash; here each line is ``KEY=VALUE`` (blank
lines and ``#`` comments ignored, an optional ``export`` word tolerated). A value may be
single- or double-quoted; nothing inside is expanded (no ``$VAR``, no ``$(...)``, no
backslash escapes), and a value containing ``$``, a backquote or a backslash is refused so a
file written for bash cannot silently mean something else.

========  =========================================================  =========
key       meaning                                                     default
========  =========================================================  =========
BUILD     ``Y``: build the images; ``N``: reuse the current release's  ``Y``
          images (a configuration-only deploy)
PUSH      ``Y``: push to the registry; ``N``: build only (a build       ``Y``
          check, nothing deployed)
DEPLOY    ``Y``: deploy the stack; ``N``: remove the app's stack          ``Y``
SCALE     replicas per service: ``web=2 worker=1`` (space or comma     (none)
          separated)
YAML_DEPLOY / YAML_BUILD   the compose pair's file names           ``deploy.yaml``,
                                                                    ``build.yaml``
COMPOSE   one compose file with ``build:`` (used when the pair is       (see appfiles)
          absent)
========  =========================================================  =========

``REGISTRY``, ``DOCKER_HOST``, ``DOCKER_HOST_DEPLOY`` and the like are the operator's
settings: they are ignored here with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["IniError", "WirelineIni", "parse_ini", "parse_scale"]

_LINE_RE = re.compile(r"^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$")
_SCALE_RE = re.compile(r"^([a-z][a-z0-9_-]{0,62})=([0-9]{1,3})$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}$")
OPERATOR_KEYS = ("REGISTRY", "DOCKER_HOST", "DOCKER_HOST_DEPLOY", "DOCKER_HOST_BUILD",
                 "SWARM", "REGISTRY_USER", "REGISTRY_PASSWORD")
MAX_REPLICAS = 100


class IniError(ValueError):
    """A malformed ``wireline.ini``; the message names the line."""


@dataclass(frozen=True)
class WirelineIni:
    """The parsed switches (see the module doc); ``warnings`` are printed to the pusher."""

    build: bool = True
    push: bool = True
    deploy: bool = True
    scale: dict[str, int] = field(default_factory=dict)
    yaml_deploy: str = "deploy.yaml"
    yaml_build: str = "build.yaml"
    compose: str = ""
    warnings: tuple[str, ...] = ()


def _unquote(raw: str, lineno: int) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    elif " #" in value:
        value = value.split(" #", 1)[0].rstrip()
    if any(ch in value for ch in "$`\\'\""):
        raise IniError(f"wireline.ini line {lineno}: quotes, '$', '`' and '\\' are not "
                       "allowed in values (the file is data, not a script)")
    return value


def _yes_no(key: str, value: str, lineno: int) -> bool:
    upper = value.upper()
    if upper in ("Y", "YES", "TRUE", "1"):
        return True
    if upper in ("N", "NO", "FALSE", "0"):
        return False
    raise IniError(f"wireline.ini line {lineno}: {key} must be Y or N, got {value[:40]!r}")


def parse_scale(text: str, *, where: str = "SCALE") -> dict[str, int]:
    """``"web=2 worker=1"`` (spaces or commas) -> ``{"web": 2, "worker": 1}``.

    :raises IniError: a word that is not ``service=replicas`` (0..100).
    """
    result: dict[str, int] = {}
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        match = _SCALE_RE.match(word)
        if not match or int(match.group(2)) > MAX_REPLICAS:
            raise IniError(f"{where}: {word[:40]!r} is not service=replicas "
                           f"(0..{MAX_REPLICAS})")
        result[match.group(1)] = int(match.group(2))
    return result


def parse_ini(text: str) -> WirelineIni:
    """Parse the file's text. :raises IniError: a malformed line, value or unknown key."""
    values: dict[str, object] = {}
    warnings: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE_RE.match(stripped)
        if not match:
            raise IniError(f"wireline.ini line {lineno}: expected KEY=VALUE")
        key, value = match.group(1), _unquote(match.group(2), lineno)
        if key in OPERATOR_KEYS:
            warnings.append(f"wireline.ini: {key} is set by the operator; ignored")
        elif key in ("BUILD", "PUSH", "DEPLOY"):
            values[key.lower()] = _yes_no(key, value, lineno)
        elif key == "SCALE":
            values["scale"] = parse_scale(value, where=f"wireline.ini line {lineno}: SCALE")
        elif key in ("YAML_DEPLOY", "YAML_BUILD", "COMPOSE"):
            if not _FILE_RE.match(value) or ".." in value.split("/"):
                raise IniError(f"wireline.ini line {lineno}: {key} must be a relative path "
                               "inside the repository")
            values[key.lower()] = value
        else:
            raise IniError(f"wireline.ini line {lineno}: unknown key {key}")
    return WirelineIni(warnings=tuple(warnings), **values)  # type: ignore[arg-type]
