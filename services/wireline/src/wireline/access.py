"""Who may push what: the SSH forced command and the ``authorized_keys`` lines.

Every key in wireline's ``AuthorizedKeysFile`` is one line (format: sshd(8), "AUTHORIZED_KEYS
FILE FORMAT")::

    restrict,command="<shell> --settings <file> --key <name> --fingerprint <fp> --apps a,b" <type> <base64> <name>

``restrict`` turns off pty allocation, agent/X11/port forwarding and ``~/.ssh/rc``; the forced
command replaces whatever the client asked for, which sshd hands over in
``SSH_ORIGINAL_COMMAND``. :func:`parse_command` accepts exactly the two commands git's SSH
transport sends (``git-receive-pack '<path>'`` for a push, ``git-upload-pack '<path>'`` for a
fetch; see git's ``connect.c``/"git-receive-pack" manual) and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from dataclasses import dataclass

__all__ = [
    "APP_RE",
    "AccessError",
    "GitCommand",
    "KeyEntry",
    "KEY_NAME_RE",
    "authorized_keys_line",
    "check_app_name",
    "fingerprint",
    "parse_command",
    "parse_public_key",
    "render_authorized_keys",
]

#: An app name: also a Swarm stack name, a registry path component and a NATS subject token.
APP_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
#: A key's name: what ``unify apps keys`` calls it and what releases record.
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_COMMAND_RE = re.compile(r"^(git-receive-pack|git-upload-pack) '/?([^']*?)(?:\.git)?/?'$")
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
              "sk-ecdsa-sha2-nistp256@openssh.com")


class AccessError(ValueError):
    """A refused SSH command or key; ``str()`` is the message shown to the client."""


@dataclass(frozen=True)
class GitCommand:
    """An accepted command: ``service`` is ``git-receive-pack`` or ``git-upload-pack``."""

    service: str
    app: str

    @property
    def is_push(self) -> bool:
        """Whether this is a push (``git-receive-pack``)."""
        return self.service == "git-receive-pack"


def check_app_name(name: str) -> str:
    """Return ``name`` when it is a valid app name, else raise.

    Valid: :data:`APP_RE` (``^[a-z][a-z0-9-]{0,62}$``) and no trailing ``-`` (a registry path
    component cannot end with a separator, see the distribution "reference" grammar).

    :raises AccessError: naming the rule broken.
    """
    if not APP_RE.match(name) or name.endswith("-"):
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise AccessError(
            f"invalid app name {shown!r}: use a lowercase letter, then up to 62 lowercase "
            "letters, digits or '-' (not ending with '-')")
    return name


def parse_command(original: str | None) -> GitCommand:
    """Parse ``SSH_ORIGINAL_COMMAND`` into a :class:`GitCommand`.

    Accepted: ``git-receive-pack '<app>'`` and ``git-upload-pack '<app>'``, where the quoted
    path may carry one leading ``/`` (``ssh://host/app`` URLs) and a ``.git`` suffix.

    :raises AccessError: ``None``/empty (an interactive shell), another program, extra words
        or shell syntax (``;``, ``&&``, quotes, newlines), or an invalid app name.
    """
    if original is None or not original.strip():
        raise AccessError("interactive shells are not allowed; push with "
                          "`git push ssh://<host>/<app> main`")
    if len(original) > 300 or any(ch in original for ch in "\n\r\0"):
        raise AccessError("refused: one git command per connection, on one line")
    match = _COMMAND_RE.match(original)
    if not match:
        word = original.split(None, 1)[0] if original.split() else original
        if word in ("git-receive-pack", "git-upload-pack"):
            raise AccessError(f"refused: {word} takes exactly one quoted app name, "
                              "e.g. git-receive-pack 'myapp'")
        raise AccessError(f"refused: only git-receive-pack and git-upload-pack are allowed, "
                          f"not {word[:40]!r}")
    service, app = match.group(1), match.group(2)
    return GitCommand(service=service, app=check_app_name(app))


def parse_public_key(text: str) -> tuple[str, str, str]:
    """Split an OpenSSH public key line ``<type> <base64> [comment]`` and check it.

    :returns: ``(type, base64 blob, comment)``; the comment may be empty.
    :raises AccessError: not one line, unknown type, bad base64, or a blob that does not
        decode as that key type (checked with ``cryptography``).
    """
    text = text.strip()
    if "\n" in text or "\r" in text:
        raise AccessError("a public key is one line")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise AccessError("a public key is '<type> <base64> [comment]'")
    key_type, blob = parts[0], parts[1]
    if key_type not in _KEY_TYPES:
        raise AccessError(f"unsupported key type {key_type[:40]!r}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise AccessError("the key's base64 is malformed") from None
    if not key_type.startswith("sk-"):
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
        try:
            load_ssh_public_key(f"{key_type} {blob}".encode())
        except (ValueError, TypeError) as err:
            raise AccessError(f"not a valid {key_type} key: {err}") from None
    if not raw.startswith(len(key_type).to_bytes(4, "big") + key_type.encode()):
        raise AccessError(f"the key blob is not a {key_type} key")
    comment = parts[2] if len(parts) > 2 else ""
    return key_type, blob, comment


def fingerprint(blob: str) -> str:
    """OpenSSH's SHA-256 fingerprint of a key blob (base64 text): ``SHA256:`` + unpadded
    base64 of SHA-256 over the decoded blob, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class KeyEntry:
    """One pusher key. ``apps`` lists the apps it may push and fetch; ``all_apps`` allows any."""

    name: str
    key_type: str
    blob: str
    apps: tuple[str, ...] = ()
    all_apps: bool = False

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.blob)

    def allows(self, app: str) -> bool:
        """Whether this key may push/fetch ``app``."""
        return self.all_apps or app in self.apps


def authorized_keys_line(entry: KeyEntry, *, shell: str, settings_file: str) -> str:
    """The ``authorized_keys`` line of one key (see the module doc).

    ``shell`` is the absolute path of ``unify-wireline-shell``; ``settings_file`` the JSON
    settings the shell reads. Both are operator-controlled; name and apps were validated.

    :raises AccessError: a path with characters that cannot sit inside ``command="..."``.
    """
    for path in (shell, settings_file):
        if not re.match(r"^/[A-Za-z0-9_./+-]+$", path):
            raise AccessError(f"unsafe path for a forced command: {path!r}")
    if not KEY_NAME_RE.match(entry.name):
        raise AccessError(f"invalid key name {entry.name!r}")
    scope = "--all" if entry.all_apps else "--apps " + ",".join(
        check_app_name(app) for app in entry.apps)
    command = (f"{shell} --settings {settings_file} --key {entry.name} "
               f"--fingerprint {entry.fingerprint} {scope}")
    return f'restrict,command="{command}" {entry.key_type} {entry.blob} {entry.name}'


def render_authorized_keys(entries: list[KeyEntry], *, shell: str, settings_file: str) -> str:
    """The whole ``authorized_keys`` file: a header, then one line per key sorted by name.
    A key with no apps and not ``all_apps`` gets no line (it could do nothing)."""
    lines = ["# written by wireline from `unify apps keys`; edits are overwritten"]
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.all_apps or entry.apps:
            lines.append(authorized_keys_line(entry, shell=shell, settings_file=settings_file))
    return "\n".join(lines) + "\n"


def quote_for_log(text: str) -> str:
    """A bounded, printable form of hostile text for logs."""
    return shlex.quote(text[:200])
