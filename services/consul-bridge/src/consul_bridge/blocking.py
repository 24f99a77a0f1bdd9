"""Consul blocking-query index handling, as the Consul "Blocking Queries" API page prescribes.

* The ``X-Consul-Index`` of an answer is the ``index`` of the next request.
* If the index goes backwards (agent restart, snapshot restore), reset to 0: the next request
  is a plain read that returns at once with a fresh index.
* An index below 1 is never used to block (it would return at once, forever): use 1.
* A wake-up with the same index means nothing changed (a timeout or an idempotent write).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IndexStep", "next_index"]


@dataclass(frozen=True)
class IndexStep:
    """Outcome of one answer: ``index`` to send next; ``changed`` when the answer may carry
    new data; ``reset`` when the index went backwards."""

    index: int
    changed: bool
    reset: bool


def next_index(previous: int, returned: int) -> IndexStep:
    """Decide the next blocking index from the ``previous`` one sent and the ``returned`` one.

    >>> next_index(10, 10)
    IndexStep(index=10, changed=False, reset=False)
    >>> next_index(10, 4)
    IndexStep(index=0, changed=True, reset=True)
    """
    if previous > 0 and returned < previous:
        return IndexStep(index=0, changed=True, reset=True)
    if returned < 1:
        return IndexStep(index=1, changed=previous < 1, reset=False)
    return IndexStep(index=returned, changed=returned != previous, reset=False)


async def blocking_get(client, path: str, *, index: int, wait: str,
                       params: list[tuple[str, str]] | None = None) -> tuple[int, str]:
    """One blocking GET through py-consul's HTTP client, returning the raw answer.

    Used instead of the parsed helpers so an unchanged answer (many wake-ups are: a node
    write wakes every service on that node) is recognised by comparing text, before any JSON
    decoding. The ACL token (``X-Consul-Token``) is added by the client.

    :param path: the API path with names as they are (``/v1/health/service/a b?c``):
        py-consul percent-encodes it (every character but ``/`` and ``:``), and Consul reads
        a name as the rest of the decoded path, ``/`` included.
    :returns: ``(X-Consul-Index, body text)``.
    :raises consul.ConsulException: a non-2xx answer (``consul.NotFound`` for 404).
    """
    from consul.callback import CB

    def callback(response):
        CB._status(response, allow_404=False)
        return int(response.headers.get("X-Consul-Index", 0) or 0), response.body

    query = [("index", str(index)), ("wait", wait), *(params or [])]
    # no gzip: the agent is local (loopback or the node's own), compressing costs both sides
    headers = {**client.prepare_headers(), "Accept-Encoding": "identity"}
    return await client.http.get(callback, path, params=query, headers=headers)
