"""The layout file beside the configuration: slot layout and port kinds written with the
hash of the configuration they describe, read back at start, and the configuration's own
comments read instead when the file is missing, stale or broken (real files)."""

from __future__ import annotations

import hashlib
import json

from switchboard.apply.layoutfile import layout_path, load_layout, save_layout
from switchboard.desired import backend_name, build_desired, frontend_ports
from switchboard.plan import slot_layout
from switchboard.render import RenderOptions, render
from tests.fixtures.catalog import make_instance

WEB = backend_name("http", "web")


def rendered():
    desired = build_desired([
        make_instance("web", "w1", "10.0.0.1", 80, ["dns=example.com", "vhost=web", "http=8080"]),
        make_instance("web", "w2", "10.0.0.2", 80, ["dns=example.com", "vhost=web", "http=8080"]),
        make_instance("db", "d1", "10.0.0.5", 5432, ["tcp=15432"])])
    return desired, render(desired, RenderOptions(host_maps=False))


def test_saved_layout_is_read_back_for_the_same_configuration(tmp_path):
    desired, data = rendered()
    config = tmp_path / "haproxy.cfg"
    config.write_bytes(data)
    # a layout the comments would not give (w2 first), to show which source was read
    slots = {WEB: tuple(reversed(slot_layout(desired)[WEB]))}
    save_layout(config, data, slots, frontend_ports(desired))
    assert layout_path(config) == tmp_path / "haproxy.cfg.layout.json"
    assert json.loads(layout_path(config).read_text()) == {
        "config_sha256": hashlib.sha256(data).hexdigest(),
        "slots": {WEB: list(slots[WEB])},
        "ports": {"8080": "http", "15432": "tcp"},
        "version": 1}
    assert load_layout(config, data) == (slots, {8080: "http", 15432: "tcp"})


def test_configuration_comments_are_read_when_the_file_does_not_describe_it(tmp_path):
    desired, data = rendered()
    config = tmp_path / "haproxy.cfg"
    from_comments = (slot_layout(desired) | {"be_no_route": ()}, {8080: "http", 15432: "tcp"})
    # written by a version without the layout file
    assert load_layout(config, data) == from_comments
    # a layout of another configuration (a stop between the two writes)
    save_layout(config, b"older configuration\n", {WEB: ("i.x",)}, {9: "tcp"})
    assert load_layout(config, data) == from_comments
    # a broken file
    layout_path(config).write_text('{"config_sha256": 7}')
    assert load_layout(config, data) == from_comments
    # no live configuration at all
    assert load_layout(config, None) == ({}, {})
