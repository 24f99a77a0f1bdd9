"""One-line error texts for the CLI: a short reason instead of an exception's ``repr``, and
secrets inside URLs masked (:func:`unify_common.logs.mask_secrets`), since the lines go to
terminals and CI logs.

Exit statuses of every ``unify`` command: 0 success, 1 a runtime failure (a server or engine
unreachable, a refusal, a missing optional package), 2 usage or settings errors.
"""

from __future__ import annotations

import errno
import ssl

from unify_common.logs import mask_secrets

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "line", "reason"]

#: a runtime failure: something unreachable, a refusal, a missing extra
EXIT_FAILURE = 1
#: bad arguments or settings
EXIT_USAGE = 2


def _os_reason(err: OSError) -> str:
    if err.errno is not None and err.errno in errno.errorcode:
        text = {errno.ECONNREFUSED: "connection refused", errno.ENOENT: "no such file",
                errno.EACCES: "permission denied", errno.ETIMEDOUT: "timed out",
                errno.EHOSTUNREACH: "host unreachable",
                errno.ENETUNREACH: "network unreachable"}.get(err.errno)
        if text:
            return text
    return err.strerror or str(err) or type(err).__name__


def reason(err: BaseException) -> str:
    """A short, human reason for ``err`` (e.g. ``cannot connect to 127.0.0.1:3: connection
    refused``), looking through the exception it was raised from or during (``raise ... from
    None`` keeps that in ``__context__``). Secrets in URLs are masked."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = _direct(current)
        if text:
            return mask_secrets(text)
        current = current.__cause__ or current.__context__
    return mask_secrets(str(err) or type(err).__name__)


def _direct(err: BaseException) -> str:
    import aiohttp  # the registry API client's errors (declared in cli/pyproject.toml)

    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {err.host}:{err.port} not trusted"
    if isinstance(err, aiohttp.ClientConnectorError):
        cause = err.os_error
        why = _os_reason(cause) if isinstance(cause, OSError) and not isinstance(
            cause, ssl.SSLError) else (str(cause) or type(cause).__name__)
        return f"cannot connect to {err.host}:{err.port}: {why}"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(err, aiohttp.InvalidURL):
        return f"invalid URL {err.url}"
    if isinstance(err, aiohttp.ClientResponseError):
        return f"HTTP {err.status} {err.message}".strip()
    if isinstance(err, TimeoutError):
        return "no answer in time"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, ConnectionError | FileNotFoundError | PermissionError):
        return _os_reason(err)
    return ""


def line(prefix: str, message: object) -> str:
    """``"<prefix>: <message>"`` with secrets in URLs masked."""
    return mask_secrets(f"{prefix}: {message}")
