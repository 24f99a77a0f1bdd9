"""Secrets inside URLs are masked in every log line, whatever field or message holds them."""

from __future__ import annotations

import json
import logging

import pytest

from unify_common.logs import _JsonFormatter, _TextFormatter, mask_secrets


@pytest.mark.parametrize(("text", "masked"), [
    pytest.param("nats://u:secret@host:4222", "nats://u:***@host:4222", id="nats-password"),
    pytest.param("tls://u:p%40ss@host:4222", "tls://u:***@host:4222", id="encoded-password"),
    pytest.param("nats://s3cr3t-token@host:4222", "nats://***@host:4222", id="nats-token"),
    pytest.param("nats://u:a@h1:1, nats://u:b@h2:2", "nats://u:***@h1:1, nats://u:***@h2:2",
                 id="several"),
    pytest.param("https://user:pw@consul.local:8501/v1/kv?token=abc&recurse=1",
                 "https://user:***@consul.local:8501/v1/kv?token=***&recurse=1",
                 id="https-and-query"),
    pytest.param("https://b.s3/x?X-Amz-Signature=f00&X-Amz-Credential=k/1",
                 "https://b.s3/x?X-Amz-Signature=***&X-Amz-Credential=***", id="presigned"),
    pytest.param("nats://127.0.0.1:4222", "nats://127.0.0.1:4222", id="no-userinfo"),
    pytest.param("ssh://git@host/repo.git", "ssh://git@host/repo.git", id="user-only-kept"),
    pytest.param("a plain message", "a plain message", id="plain"),
])
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


@pytest.mark.parametrize("formatter", [_JsonFormatter(), _TextFormatter()], ids=["json", "text"])
def test_urls_with_secrets_are_masked_in_values_and_messages(formatter):
    record = logging.LogRecord("t", logging.WARNING, __file__, 1,
                               "cannot reach %s", ("nats://u:secret@host:4222",), None)
    record.fields = {"nats_urls": ("nats://u:secret@host:4222", "nats://h2:4222"),
                     "detail": {"url": "https://x:pw2@h/"}}
    line = formatter.format(record)
    assert "secret" not in line and "pw2" not in line
    if isinstance(formatter, _JsonFormatter):
        assert json.loads(line)["msg"] == "cannot reach nats://u:***@host:4222"
        assert json.loads(line)["nats_urls"] == ["nats://u:***@host:4222", "nats://h2:4222"]
        assert json.loads(line)["detail"] == {"url": "https://x:***@h/"}
    else:
        assert line == ('warning t: cannot reach nats://u:***@host:4222 nats_urls='
                        '["nats://u:***@host:4222", "nats://h2:4222"] '
                        'detail={"url": "https://x:***@h/"}')


def _written(fmt: str, write) -> list[str]:
    """The lines ``configure_logging(fmt=...)`` writes while ``write(log)`` runs."""
    import io

    from unify_common.logs import configure_logging, get_logger

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="DEBUG", stream=stream)
    try:
        write(get_logger("unify.test"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return stream.getvalue().splitlines()


def _drop_ts(line: str) -> dict:
    entry = json.loads(line)
    del entry["ts"]
    return entry


def test_fields_as_keywords_old_extra_form_and_bound_fields():
    def write(log):
        log.info("deployed %s", "web", app="web", revision=3)
        log.warning("old form", extra={"fields": {"app": "api", "revision": 1}}, node="n1")
        log.bind(component="dns411").debug("bound", revision=4)
        log.info("plain")

    assert [_drop_ts(line) for line in _written("json", write)] == [
        {"level": "info", "logger": "unify.test", "msg": "deployed web", "app": "web",
         "revision": 3},
        {"level": "warning", "logger": "unify.test", "msg": "old form", "app": "api",
         "revision": 1, "node": "n1"},
        {"level": "debug", "logger": "unify.test", "msg": "bound", "component": "dns411",
         "revision": 4},
        {"level": "info", "logger": "unify.test", "msg": "plain"},
    ]


def test_exc_info_still_writes_the_traceback_beside_the_fields():
    def write(log):
        try:
            raise KeyError("gone")
        except KeyError as err:
            log.error("lookup failed", exc_info=err, key="a")
            log.exception("again", key="b")

    first, second = (_drop_ts(line) for line in _written("json", write))
    assert {k: v for k, v in first.items() if k != "exc"} == {
        "level": "error", "logger": "unify.test", "msg": "lookup failed", "key": "a"}
    assert first["exc"].splitlines()[-1] == "KeyError: 'gone'"
    assert second["key"] == "b" and second["exc"].splitlines()[-1] == "KeyError: 'gone'"


def test_secret_fields_and_urls_in_keyword_values_are_masked():
    def write(log):
        log.info("connecting", token="t0k3n", nats_password="pw1",
                 url="nats://unify:pw2@10.0.0.1:4222", urls=["tls://u:pw3@h:4222"])

    text = _written("text", write)
    assert text == ['info    unify.test: connecting token="***" nats_password="***" '
                    'url="nats://unify:***@10.0.0.1:4222" urls=["tls://u:***@h:4222"]']
    assert _drop_ts(_written("json", write)[0]) == {
        "level": "info", "logger": "unify.test", "msg": "connecting", "token": "***",
        "nats_password": "***", "url": "nats://unify:***@10.0.0.1:4222",
        "urls": ["tls://u:***@h:4222"]}


def test_get_logger_wraps_a_standard_logger_once():
    from unify_common.logs import Logger, get_logger

    plain = logging.getLogger("unify.test.plain")
    wrapped = get_logger(plain)
    assert isinstance(wrapped, Logger) and wrapped.logger is plain
    assert get_logger(wrapped) is wrapped
    assert get_logger("unify.test.plain").logger is plain
