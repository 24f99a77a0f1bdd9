"""The line a command prints when NATS cannot be reached never shows a password."""

from __future__ import annotations

from unify_common.natsio import unreachable_message
from unify_common.settings import CommonSettings


def test_unreachable_message_masks_passwords_and_tokens_in_urls():
    settings = CommonSettings.from_env({
        "NATS_URL": "nats://unify:n4ts-pw@10.0.0.1:4222,tls://s3cr3t-token@10.0.0.2:4222"})
    err = ConnectionRefusedError("connect to nats://unify:n4ts-pw@10.0.0.1:4222 refused")
    assert unreachable_message(settings, err) == (
        "cannot reach NATS at nats://unify:***@10.0.0.1:4222, tls://***@10.0.0.2:4222 "
        "(connect to nats://unify:***@10.0.0.1:4222 refused); set NATS_URL "
        "(for the dev stack: source .unify/dev/env)")


def test_unreachable_message_without_secrets_is_unchanged():
    settings = CommonSettings.from_env({"NATS_URL": "nats://127.0.0.1:4222"})
    assert unreachable_message(settings, TimeoutError()) == (
        "cannot reach NATS at nats://127.0.0.1:4222 (no answer); set NATS_URL "
        "(for the dev stack: source .unify/dev/env)")
