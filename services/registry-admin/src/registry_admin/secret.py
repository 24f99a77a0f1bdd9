"""The registry cluster's shared ``REGISTRY_HTTP_SECRET`` and its fingerprint.

distribution signs the upload state it hands to clients (the ``_state`` query parameter of an
upload's ``Location``) with ``http.secret``; an instance with another secret rejects the
upload with ``BLOB_UPLOAD_INVALID``/``BLOB_UPLOAD_UNKNOWN`` (distribution#1576). Every
instance must therefore carry the same secret. Instances publish only a *fingerprint* of
theirs (Consul service meta, see the README); the secret itself is never logged, published or
compared in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["fingerprint", "new_secret", "same_fingerprint", "secret_problems"]

_DOMAIN = b"unify-registry-http-secret\0"


def new_secret() -> str:
    """A new secret: 48 random bytes as URL-safe base64 (64 characters)."""
    return secrets.token_urlsafe(48)


def fingerprint(secret: str) -> str:
    """``sha256:`` + 32 hex digits of SHA-256 over a fixed domain string and the secret.
    The secret has 384 random bits, so the fingerprint cannot be turned back into it."""
    return "sha256:" + hashlib.sha256(_DOMAIN + secret.encode()).hexdigest()[:32]


def same_fingerprint(a: str, b: str) -> bool:
    """Constant-time comparison of two fingerprints."""
    return hmac.compare_digest(a.encode(), b.encode())


def secret_problems(expected: str, reported: dict[str, str | None]) -> dict[str, str]:
    """Instances whose reported fingerprint differs from ``expected``.

    :param expected: the fingerprint of registry-admin's secret.
    :param reported: instance name -> the fingerprint it reports, ``None`` when it reports
        none (not a mismatch: it is listed by the caller as unknown).
    :returns: instance name -> a one-line reason (without either fingerprint in full).
    """
    out: dict[str, str] = {}
    for name, fp in sorted(reported.items()):
        if fp is None:
            continue
        if not same_fingerprint(fp, expected):
            out[name] = (f"REGISTRY_HTTP_SECRET of {name} differs from the cluster's "
                         f"(fingerprint {fp[:15]}…, expected {expected[:15]}…): uploads "
                         "that move between instances fail with 'blob upload unknown'")
    return out


def probe_problems(reference: str, verdicts: dict[str, bool | None], *,
                   reference_verified: bool) -> dict[str, str]:
    """Instances whose secret differs, from upload-state probes (pure).

    An upload started on ``reference`` carries a state token signed with its secret; another
    instance accepts it only with the same secret. ``verdicts`` maps every other instance to
    ``True`` (accepted), ``False`` (refused: the secrets differ) or ``None`` (could not tell).
    When ``reference`` is not known to be right (``reference_verified``: its fingerprint
    matches) and more than half of the decided instances refuse, ``reference`` is the odd one
    and is reported alone.

    :returns: instance name -> one-line reason.
    """
    decided = {k: v for k, v in verdicts.items() if v is not None}
    refused = sorted(k for k, v in decided.items() if v is False)
    if not refused:
        return {}
    if not reference_verified and len(refused) * 2 > len(decided):
        return {reference: (f"REGISTRY_HTTP_SECRET of {reference} differs from the other "
                            f"instances': {len(refused)} of {len(decided)} refuse uploads "
                            f"it started ('blob upload unknown')")}
    return {name: (f"REGISTRY_HTTP_SECRET of {name} differs from {reference}'s: it refuses "
                   f"uploads started there ('blob upload unknown')") for name in refused}
