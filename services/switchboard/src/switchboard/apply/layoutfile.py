"""The slot layout and port kinds of the live configuration, kept in a small JSON file beside it.

A restarted switchboard needs both to build a desired state the running worker can take at
runtime: which ``server s<i>`` line holds which instance (so no instance changes slot) and
which kind each frontend port has (see :func:`switchboard.desired.build_desired`,
``previous_slots`` and ``previous_ports``). They are written atomically
(:func:`unify_common.atomic.write_atomic`) to ``<config file name>.layout.json`` each time
the configuration file is written, with the SHA-256 of the configuration bytes they describe:

.. code-block:: json

    {"version": 1, "config_sha256": "<64 hex>",
     "slots": {"be_http_web_1a2b3c4d": ["i.<40 hex>", null]},
     "ports": {"8080": "http"}}

At start the file is used only when its ``config_sha256`` is that of the live configuration;
otherwise (no file, another configuration, unreadable) both are read once from the comments of
the live configuration as switchboard has always rendered them
(:func:`switchboard.plan.layout_from_config`, :func:`switchboard.plan.ports_from_config`): a
configuration written by a version before this file, or a stop between the two writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from unify_common.atomic import write_atomic
from unify_common.logs import get_logger

from ..plan import layout_from_config, ports_from_config

__all__ = ["SavedLayout", "layout_path", "load_layout", "save_layout"]

log = get_logger("switchboard.layout")

Slots = Mapping[str, tuple[str | None, ...]]


class SavedLayout(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The JSON document (see the module doc); ``ports`` keys are port numbers."""

    config_sha256: str
    slots: dict[str, tuple[str | None, ...]]
    ports: dict[int, str]
    version: int = 1


_decoder = msgspec.json.Decoder(SavedLayout)
_encoder = msgspec.json.Encoder()


def layout_path(config_path: Path) -> Path:
    """Where the layout of ``config_path`` is kept: ``<name>.layout.json`` beside it."""
    return config_path.with_name(config_path.name + ".layout.json")


def save_layout(config_path: Path, data: bytes, slots: Slots, ports: Mapping[int, str]) -> None:
    """Record ``slots`` and ``ports`` as those of the configuration ``data`` (the bytes just
    written to ``config_path``). Atomic; nothing is written when the file holds them already.

    :raises OSError: the directory is not writable (the previous file is intact).
    """
    document = SavedLayout(config_sha256=hashlib.sha256(data).hexdigest(),
                           slots=dict(slots), ports=dict(ports))
    write_atomic(layout_path(config_path), _encoder.encode(document) + b"\n")


def load_layout(config_path: Path, live: bytes | None) -> tuple[dict[str, tuple[str | None, ...]],
                                                                dict[int, str]]:
    """The slot layout and port kinds of the live configuration ``live`` (the bytes of
    ``config_path``, ``None`` when it does not exist): from the layout file when it describes
    these bytes, else from the configuration's comments (see the module doc).

    :returns: ``(backend name -> slot keys, port -> kind)``; both empty without a live file.
    """
    if live is None:
        return {}, {}
    path = layout_path(config_path)
    reason = ""
    try:
        saved = _decoder.decode(path.read_bytes())
    except FileNotFoundError:
        reason = "no layout file"
    except (OSError, msgspec.DecodeError) as err:
        reason = f"unreadable layout file: {err}"
    else:
        if saved.config_sha256 == hashlib.sha256(live).hexdigest():
            return dict(saved.slots), dict(saved.ports)
        reason = "layout file describes another configuration"
    log.info("slot layout and port kinds read from the live configuration's comments",
             path=str(config_path), reason=reason[:300])
    text = live.decode(errors="replace")
    return layout_from_config(text), ports_from_config(text)
