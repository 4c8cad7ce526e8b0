"""Turning session data into bytes and back.

JSON is the default because it can only ever produce data, never code: a
session store or cookie that an attacker can write to must not become remote
code execution, which is what a pickle serializer would make it. Anything
that implements :class:`Serializer` can replace it (msgpack, orjson, ...).

This module knows nothing of cookies, stores or sessions; it sees plain
JSON-like values.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Callable, Iterable
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


def _refuse(value: Any) -> Any:
    raise TypeError(
        f"Object of type {type(value).__name__} is not JSON serializable: "
        "store strings, numbers, booleans, None, lists and dicts in the session"
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class JSONSerializer:
    """Compact, strict JSON (UTF-8; ``NaN`` and infinities refused both ways).

    Values that JSON cannot represent (``datetime``, ``set``, bytes) raise
    ``TypeError`` when the session is saved, the same as Starlette's cookie
    sessions: convert them to strings or lists first.

    It calls the standard library's C encoder and scanner directly rather
    than through ``json.dumps``/``json.loads``: the same output in about half
    the time, on a path every session request takes.
    """

    __slots__ = ("_chunks", "_encode", "_scan")

    def __init__(self) -> None:
        c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
        # The C encoder yields chunks of text; dumps joins them.
        self._chunks: Callable[[Any, int], Iterable[str]] | None = None
        if c_make_encoder is not None:
            self._chunks = c_make_encoder(
                None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
            )
        self._encode: Callable[[Any], str] = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
        ).encode
        decoder = json.JSONDecoder(parse_constant=_refuse_constant)
        scanner: Any = json.scanner.make_scanner
        self._scan: Callable[[str, int], tuple[Any, int]] = scanner(decoder)

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value`` as compact UTF-8 JSON."""
        chunks = self._chunks
        if chunks is not None:
            return "".join(chunks(value, 0)).encode("utf-8")
        return self._encode(value).encode("utf-8")  # pragma: no cover - no C accelerator

    def loads(self, data: bytes) -> Any:
        """Parse UTF-8 JSON; raises ``ValueError`` on anything else."""
        text = data.decode("utf-8")
        try:
            value, end = self._scan(text, 0)
        except StopIteration:
            raise ValueError("not JSON") from None
        if end != len(text):
            raise ValueError("trailing data after JSON")
        return value
