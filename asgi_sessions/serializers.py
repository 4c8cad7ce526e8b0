"""Turning session records into bytes and back.

JSON is the default because it can only ever produce data, never code: a
session store or cookie that an attacker can write to must not become remote
code execution, which is what a pickle serializer would make it. Anything
that implements :class:`Serializer` can replace it (msgpack, orjson, ...).

This module knows nothing of cookies, stores or sessions; it sees plain
JSON-like values.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

__all__ = ["JSONSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """What asgi_sessions needs to persist a session.

    ``dumps`` receives dicts, lists, strings, numbers, booleans and ``None``
    (the record around the session data is made of those too) and must return
    bytes that ``loads`` turns back into an equal value. ``loads`` may raise
    any ``ValueError`` (or subclass) on bytes it does not recognise; the
    session is then treated as missing.
    """

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value`` to bytes."""
        ...

    def loads(self, data: bytes) -> Any:
        """Deserialise bytes produced by :meth:`dumps`."""
        ...


class JSONSerializer:
    """Compact, strict JSON (UTF-8; ``NaN`` and infinities refused).

    Values that JSON cannot represent (``datetime``, ``set``, bytes) raise
    ``TypeError`` when the session is saved, the same as Starlette's cookie
    sessions: convert them to strings or lists first.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode
        self._decoder = json.JSONDecoder().decode

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value`` as compact UTF-8 JSON."""
        return self._encoder(value).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """Parse UTF-8 JSON; raises ``ValueError`` on anything else."""
        return self._decoder(data.decode("utf-8"))
