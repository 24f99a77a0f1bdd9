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
