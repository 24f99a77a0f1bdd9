"""KV entries keep a value's exact bytes (pure)."""

from __future__ import annotations

import pytest

from unify_common.events import KvEntry, KvSet, decode_event, encode_event


@pytest.mark.parametrize(("raw", "value", "value_base64", "text"), [
    pytest.param(b"10.0.0.1", "10.0.0.1", None, "10.0.0.1", id="ascii"),
    pytest.param(b"", "", None, "", id="empty"),
    pytest.param("caf\u00e9".encode(), "caf\u00e9", None, "caf\u00e9", id="utf8"),
    pytest.param(b"\xff\x00a", "\ufffd\x00a", "/wBh", None, id="not-utf8"),
    pytest.param(b"\xc3", "\ufffd", "ww==", None, id="truncated-utf8"),
])
def test_from_bytes(raw, value, value_base64, text):
    entry = KvEntry.from_bytes("unify/k", raw, modify_index=7, flags=3)
    assert (entry.key, entry.value, entry.value_base64, entry.text, entry.raw,
            entry.modify_index, entry.flags) == (
        "unify/k", value, value_base64, text, raw, 7, 3)


def test_different_bytes_never_give_equal_entries_or_events():
    first, second = (KvEntry.from_bytes("unify/k", raw) for raw in (b"\xff\xfe", b"\xfe\xff"))
    assert first.value == second.value == "\ufffd\ufffd"
    assert first != second
    encoded = [encode_event(KvSet(entry=e, observed_at=1)) for e in (first, second)]
    assert encoded[0] != encoded[1]
    assert [decode_event(data).entry.raw for data in encoded] == [b"\xff\xfe", b"\xfe\xff"]


def test_events_without_the_field_still_decode():
    event = decode_event(b'{"type":"kv.set","schema":1,"observed_at":1,'
                         b'"entry":{"key":"unify/k","value":"v","modify_index":2,"flags":0}}')
    assert (event.entry.value_base64, event.entry.raw, event.entry.text) == (None, b"v", "v")
