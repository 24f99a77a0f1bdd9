"""The certificate directory: usable bundles are offered to HAProxy (and pass its check),
broken ones are skipped one by one with a reason."""

from __future__ import annotations

import subprocess

from cryptography.hazmat.primitives.serialization import Encoding
from sb_tls import TestCA

from switchboard.apply.certstore import load_certificates
from switchboard.desired import build_desired
from switchboard.render import RenderOptions, render
from tests.fixtures.catalog import make_instance


def test_certificate_directory_inventory(tmp_path, run_dir):
    ca = TestCA(tmp_path / "ca")
    certs = tmp_path / "certs"
    good = ca.issue(["app.example.com", "API.example.com"], certs / "app.pem")
    wild = ca.issue(["*.example.org"], certs / "wild.pem")
    ca.issue(["bad.example.com"], certs / "mismatch.pem", key_of=good)
    (certs / "nokey.pem").write_bytes(ca.cert.public_bytes(Encoding.PEM))
    (certs / "garbage.pem").write_text("not a certificate\n")
    ca.issue(["x.example.com"], certs / "has space.pem")
    (certs / "README.txt").write_text("ignored")

    usable, problems = load_certificates(certs)
    assert [(c.path, c.names) for c in usable] == [
        (str(good), ("api.example.com", "app.example.com")),
        (str(wild), ("*.example.org",)),
    ]
    assert [p.reason for p in problems] == ["invalid-certificate"] * 4
    assert problems[0].message.startswith("garbage.pem: ")
    messages = {p.message.split(":")[0]: p.message for p in problems}
    assert set(messages) == {"certificate paths may use only [A-Za-z0-9._/-]", "garbage.pem",
                             "mismatch.pem", "nokey.pem"}
    assert messages["mismatch.pem"] == ("mismatch.pem: the private key does not match the "
                                        "first certificate")
    assert messages["nokey.pem"] == "nokey.pem: no private key in the bundle"

    desired = build_desired([make_instance("app", "a1", "127.0.0.1", 8080, [
        "dns=example.com", "dns=example.org", "vhost=app", "https=18443"])],
        certificates=usable)
    data = render(desired, RenderOptions(bind="127.0.0.1", run_dir=str(run_dir), host_maps=False))
    assert f"bind 127.0.0.1:18443 ssl crt {good} crt {wild}\n".encode() in data
    cfg = run_dir / "check.cfg"
    cfg.write_bytes(data)
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "Configuration file is valid")


def test_missing_directory_means_no_certificates(tmp_path):
    assert load_certificates(tmp_path / "absent") == ((), [])
    assert load_certificates(None) == ((), [])


def test_store_parses_a_bundle_once_per_change_of_the_file(tmp_path):
    """The reconciler's store lists the directory every time but parses a bundle again only
    when its (name, mtime, size) changed: an unchanged file gives back the very same
    Certificate object, a renewed one a new fingerprint, a removed one disappears."""
    import os

    from switchboard.apply.certstore import CertificateStore

    ca = TestCA(tmp_path / "ca")
    certs = tmp_path / "certs"
    app = ca.issue(["app.example.com"], certs / "app.pem")
    (certs / "garbage.pem").write_text("not a certificate\n")
    store = CertificateStore(certs)
    first, problems = store.load()
    again, problems_again = store.load()
    assert [c.path for c in first] == [str(app)]
    assert again[0] is first[0]
    assert problems == problems_again == [problems[0]]
    assert problems[0].message.startswith("garbage.pem: ")

    stat = app.stat()
    ca.issue(["app.example.com", "www.example.com"], app)  # renewed in place
    os.utime(app, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    renewed, _ = store.load()
    assert renewed[0].names == ("app.example.com", "www.example.com")
    assert renewed[0].fingerprint != first[0].fingerprint
    assert store.load()[0][0] is renewed[0]

    app.unlink()
    assert store.load()[0] == ()
    assert CertificateStore(None).load() == ((), [])
