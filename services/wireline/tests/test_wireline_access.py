"""The forced-command parser and the authorized_keys lines, as tables."""

from __future__ import annotations

import base64
import subprocess

import pytest

from wireline.access import (
    AccessError,
    GitCommand,
    KeyEntry,
    authorized_keys_line,
    check_app_name,
    fingerprint,
    parse_command,
    parse_public_key,
    render_authorized_keys,
)

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQ0u0ri1lUT+0C6XjnFLH5ZbpyQd/pbDdxuIXwv2X3l "
           "alice@example")


@pytest.mark.parametrize("command, expected", [
    ("git-receive-pack 'ticker'", GitCommand("git-receive-pack", "ticker")),
    ("git-receive-pack '/ticker'", GitCommand("git-receive-pack", "ticker")),
    ("git-receive-pack '/ticker.git'", GitCommand("git-receive-pack", "ticker")),
    ("git-upload-pack 'ticker'", GitCommand("git-upload-pack", "ticker")),
    ("git-upload-pack 'a-1'", GitCommand("git-upload-pack", "a-1")),
    ("git-receive-pack '" + "a" * 63 + "'", GitCommand("git-receive-pack", "a" * 63)),
])
def test_accepted_commands(command, expected):
    assert parse_command(command) == expected


INVALID_NAME = ("invalid app name {!r}: use a lowercase letter, then up to 62 lowercase "
                "letters, digits or '-' (not ending with '-')")


@pytest.mark.parametrize("command, message", [
    (None, "interactive shells are not allowed; push with "
           "`git push ssh://<host>/<app> main`"),
    ("", "interactive shells are not allowed; push with `git push ssh://<host>/<app> main`"),
    ("git-receive-pack '../x'", INVALID_NAME.format("../x")),
    ("git-receive-pack '/srv/x'", INVALID_NAME.format("srv/x")),
    ("git-receive-pack 'Ticker'", INVALID_NAME.format("Ticker")),
    ("git-receive-pack '1app'", INVALID_NAME.format("1app")),
    ("git-receive-pack 'app-'", INVALID_NAME.format("app-")),
    ("git-receive-pack '" + "a" * 64 + "'", INVALID_NAME.format("a" * 64)),
    ("git-receive-pack 'x'\\''y'", "refused: git-receive-pack takes exactly one quoted app "
                                   "name, e.g. git-receive-pack 'myapp'"),
    ('git-receive-pack "ticker"', "refused: git-receive-pack takes exactly one quoted app "
                                  "name, e.g. git-receive-pack 'myapp'"),
    ("git-receive-pack 'ticker'; rm -rf /", "refused: git-receive-pack takes exactly one "
                                            "quoted app name, e.g. git-receive-pack 'myapp'"),
    ("git-receive-pack 'ticker' && id", "refused: git-receive-pack takes exactly one quoted "
                                        "app name, e.g. git-receive-pack 'myapp'"),
    ("git-receive-pack 'a'\ngit-upload-pack 'b'",
     "refused: one git command per connection, on one line"),
    ("git-receive-pack ticker", "refused: git-receive-pack takes exactly one quoted app name, "
                                "e.g. git-receive-pack 'myapp'"),
    ("sh -c id", "refused: only git-receive-pack and git-upload-pack are allowed, not 'sh'"),
    ("git-upload-archive 'ticker'", "refused: only git-receive-pack and git-upload-pack are "
                                    "allowed, not 'git-upload-archive'"),
    ("scp -t /tmp", "refused: only git-receive-pack and git-upload-pack are allowed, not "
                    "'scp'"),
    ("git receive-pack 'ticker'", "refused: only git-receive-pack and git-upload-pack are "
                                  "allowed, not 'git'"),
])
def test_refused_commands(command, message):
    with pytest.raises(AccessError) as err:
        parse_command(command)
    assert str(err.value) == message


def test_app_names():
    assert check_app_name("ticker-2") == "ticker-2"
    for bad in ("", "a b", "a_b", "a.b", "-a", "é"):
        with pytest.raises(AccessError):
            check_app_name(bad)


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, timeout=30)
    line = (tmp_path / "k.pub").read_text()
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    key_type, blob, _ = parse_public_key(line)
    assert key_type == "ssh-ed25519"
    assert fingerprint(blob) == out.split()[1]


@pytest.mark.parametrize("text, message", [
    ("ssh-ed25519", "a public key is '<type> <base64> [comment]'"),
    ("ssh-dss AAAA x", "unsupported key type 'ssh-dss'"),
    ("ssh-ed25519 !!!", "the key's base64 is malformed"),
    ("ssh-ed25519 AAAA\nssh-rsa AAAA", "a public key is one line"),
    ("ssh-rsa " + ED25519.split()[1], None),
])
def test_bad_public_keys(text, message):
    with pytest.raises(AccessError) as err:
        parse_public_key(text)
    if message:
        assert str(err.value) == message


def test_authorized_keys_lines():
    key_type, blob, _ = parse_public_key(ED25519)
    fp = fingerprint(blob)
    alice = KeyEntry(name="alice", key_type=key_type, blob=blob, apps=("ticker", "web"))
    ci = KeyEntry(name="ci", key_type=key_type, blob=blob, all_apps=True)
    idle = KeyEntry(name="idle", key_type=key_type, blob=blob)
    text = render_authorized_keys([ci, idle, alice], shell="/usr/bin/unify-wireline-shell",
                                  settings_file="/var/lib/wireline/shell.json")
    assert text.splitlines() == [
        "# written by wireline from `unify apps keys`; edits are overwritten",
        'restrict,command="/usr/bin/unify-wireline-shell --settings /var/lib/wireline/shell.json'
        f' --key alice --fingerprint {fp} --apps ticker,web" ssh-ed25519 {blob} alice',
        'restrict,command="/usr/bin/unify-wireline-shell --settings /var/lib/wireline/shell.json'
        f' --key ci --fingerprint {fp} --all" ssh-ed25519 {blob} ci',
    ]
    assert alice.allows("web") and not alice.allows("other") and ci.allows("other")
    assert fp == "SHA256:" + base64.b64encode(
        __import__("hashlib").sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")


@pytest.mark.parametrize("entry, shell, message", [
    (KeyEntry(name="a b", key_type="ssh-ed25519", blob="AAAA", all_apps=True), "/bin/s",
     "invalid key name 'a b'"),
    (KeyEntry(name="a", key_type="ssh-ed25519", blob="AAAA", all_apps=True), '/bin/s"x',
     "unsafe path for a forced command: '/bin/s\"x'"),
    (KeyEntry(name="a", key_type="ssh-ed25519", blob="AAAA", apps=("../x",)), "/bin/s",
     INVALID_NAME.format("../x")),
])
def test_unsafe_lines_refused(entry, shell, message):
    with pytest.raises(AccessError) as err:
        authorized_keys_line(entry, shell=shell, settings_file="/etc/w.json")
    assert str(err.value) == message
