"""Host map files follow the configuration: a frontend that goes takes its map file with it,
but only once a configuration without it passed ``haproxy -c`` and was written."""

from __future__ import annotations

import pytest

from switchboard.apply.haproxy import ConfigCheckFailed, HAProxySink

HEAD = b"""defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend be_web
    server s1 127.0.0.1:1
"""


def frontend(run_dir, port: int) -> bytes:
    return (f"frontend fe_http_{port}\n    bind 127.0.0.1:{port}\n"
            f"    use_backend %[req.hdr(host),lower,map_str({run_dir}/fe_http_{port}.map)]\n"
            "    default_backend be_web\n").encode()


async def test_map_of_a_removed_frontend_is_deleted_after_a_good_write(tmp_path):
    sink = HAProxySink(config_path=tmp_path / "haproxy.cfg", master_socket=tmp_path / "m.sock")
    one, two = tmp_path / "fe_http_8001.map", tmp_path / "fe_http_8002.map"
    other = tmp_path / "operator-notes.map"  # not switchboard's: never touched
    other.write_bytes(b"x y\n")
    maps = {str(one): b"a.example.com be_web\n", str(two): b"b.example.com be_web\n"}
    assert await sink.write(HEAD + frontend(tmp_path, 8001) + frontend(tmp_path, 8002), maps)
    assert sorted(p.name for p in tmp_path.glob("*.map")) == [
        "fe_http_8001.map", "fe_http_8002.map", "operator-notes.map"]

    # a rejected configuration without fe_http_8002 removes nothing
    with pytest.raises(ConfigCheckFailed):
        await sink.write(HEAD + frontend(tmp_path, 8001) + b"    bogus-keyword\n",
                         {str(one): maps[str(one)]})
    assert two.read_bytes() == b"b.example.com be_web\n"

    assert await sink.write(HEAD + frontend(tmp_path, 8001), {str(one): maps[str(one)]})
    assert sorted(p.name for p in tmp_path.glob("*.map")) == [
        "fe_http_8001.map", "operator-notes.map"]
    assert one.read_bytes() == b"a.example.com be_web\n"


async def test_a_check_that_does_not_end_is_killed_and_counts_as_a_rejection(tmp_path):
    """``haproxy -c`` is bounded: an executable that hangs (a stand-in for a stuck check) is
    killed after ``check_timeout`` and nothing is written."""
    import time

    hung = tmp_path / "hung-haproxy"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    sink = HAProxySink(config_path=tmp_path / "haproxy.cfg", master_socket=tmp_path / "m.sock",
                       haproxy_bin=str(hung), check_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ConfigCheckFailed) as caught:
        await sink.write(HEAD)
    assert time.monotonic() - started < 5
    assert caught.value.output == f"{hung} -c did not finish within 0.3s"
    assert not sink.config_path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hung-haproxy"]
