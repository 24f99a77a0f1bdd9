"""Keep-alive HTTP clients run in their own process for the hitless-reload test.

``python sb_keepalive_clients.py <port> <host> <clients> <expected body>`` starts ``clients``
asyncio tasks, each with one keep-alive ``httpx.AsyncClient`` sending GETs in a loop until a
line arrives on stdin; then prints one JSON object: ``ok`` (200 with the expected body) and
``failed`` (everything else, with reasons). Nothing is retried: a request lost because an
old worker closed its idle connection under it counts as failed (switchboard's frontends
carry ``option idle-close-on-response``, so that does not happen).
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx


async def main(port: int, host: str, clients: int, expected: str) -> None:
    stop = asyncio.Event()
    result = {"ok": 0, "failed": []}
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    url = f"http://127.0.0.1:{port}/"

    async def one(http: httpx.AsyncClient) -> None:
        resp = await http.get(url, headers={"Host": host})
        if (resp.status_code, resp.text) == (200, expected):
            result["ok"] += 1
        else:
            result["failed"].append(f"{resp.status_code} {resp.text[:60]}")

    async def client() -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            while not stop.is_set():
                try:
                    await one(http)
                except httpx.HTTPError as err:
                    result["failed"].append(repr(err))
                await asyncio.sleep(0.002)

    await asyncio.gather(*(client() for _ in range(clients)))
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]))
