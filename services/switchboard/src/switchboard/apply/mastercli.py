"""An asyncio client of HAProxy's master CLI socket (HAProxy 2.6 management guide, 9.4).

Each command opens a connection, sends one line and reads until HAProxy closes it. A command
prefixed with ``@1`` is forwarded to the current worker's runtime API (section 9.3).
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["master_command"]


async def master_command(socket_path: str | os.PathLike[str], command: str, *,
                         timeout: float = 5.0) -> str:
    """Send ``command`` (one line, no newline) and return HAProxy's whole answer.

    :raises OSError: the socket is missing or refuses the connection.
    :raises asyncio.TimeoutError: no complete answer within ``timeout`` seconds.
    """
    if "\n" in command or "\r" in command:
        raise ValueError("a master CLI command is one line")

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(os.fspath(socket_path))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            return await reader.read()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    data = await asyncio.wait_for(exchange(), timeout)
    return data.decode(errors="replace")
