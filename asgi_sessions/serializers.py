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

from .errors import ImproperlyConfigured

__all__ = ["JSONSerializer", "Serializer"]

_CODE_SERIALIZERS: frozenset[str] = frozenset(
    {"pickle", "_pickle", "dill", "cloudpickle", "marshal"}
)
"""Modules whose ``loads`` runs (or crashes on) what the bytes say, not data."""

_PROBE: dict[str, Any] = {
    "c": 1_700_000_000,
    "i": 1_700_000_001,
    "e": None,
    "z": 1,
    "s": {"user": "alice", "n": 3, "f": 2.5, "t": True, "x": None, "m": {"é": "ü"}},
}
"""A record shaped like the ones sessions write (see ``_record``), lists aside:
a serializer may decode those as tuples (msgpack's ``use_list=False``)."""


@runtime_checkable
class Serializer(Protocol):
    """What asgi_sessions needs to persist a session.

    ``dumps`` receives dicts, lists, strings, numbers, booleans and ``None``
    (the record around the session data is made of those too) and must return
    bytes that ``loads`` turns back into an equal value. ``loads`` may raise
    any ``ValueError`` (or subclass), ``TypeError`` or ``RecursionError`` on
    bytes it does not recognise or cannot decode; the session is then treated
    as missing (a fresh empty session, never a 500).

    ``SessionMiddleware`` checks the serializer it is given when it is built
    and raises ``ImproperlyConfigured`` for one that cannot work: the
    ``pickle`` module (anyone who can write a record would run code), one
    without callable ``dumps`` and ``loads``, or one whose ``dumps`` does not
    return ``bytes`` or whose ``loads`` does not give back an equal record
    (msgpack needs ``raw=False``; lists may come back as tuples).

    ``dumps`` raises (``TypeError``, ``ValueError``, ``OverflowError`` or
    ``RecursionError``) for a value it cannot encode: the app's bug. When the
    session is saved as the response starts, that error reaches the app's
    server as a 500 and nothing was written or deleted first: a ``flush()``
    followed by such a value keeps the old session. Saved later (a websocket
    that ends, a response body that changes the session after the headers)
    nobody is left to answer: the changes are dropped and the
    ``asgi_sessions`` logger says so at ERROR with the exception's text (which
    for :class:`JSONSerializer` names the type, not the value).
    """

    def dumps(self, value: Any) -> bytes:
        """Serialise ``value`` to bytes."""
        ...

    def loads(self, data: bytes) -> Any:
        """Deserialise bytes produced by :meth:`dumps`."""
        ...


def check_serializer(serializer: Any) -> Serializer:
    """Return ``serializer`` if it can carry sessions; raise ``ImproperlyConfigured`` if not.

    Run once, when the middleware is built: a serializer that cannot work
    would otherwise fail on the first write (a 500 in production), or, worse,
    write records it cannot read back, so every session silently starts
    empty. It refuses the ``pickle`` module (and ``dill``, ``cloudpickle``,
    ``marshal``): anyone who can write to the store or forge a record would
    run code. It then encodes a small record and decodes it: ``dumps`` must
    return ``bytes`` and ``loads`` must give back an equal value (strings as
    ``str``, not ``bytes``).
    """
    name = getattr(serializer, "__name__", None)
    if isinstance(name, str) and name.split(".")[-1] in _CODE_SERIALIZERS:
        raise ImproperlyConfigured(
            f"serializer={name} would let anyone who can write a session record run code; "
            "use JSONSerializer (the default) or a data-only format such as msgpack"
        )
    dumps = getattr(serializer, "dumps", None)
    loads = getattr(serializer, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise ImproperlyConfigured(
            "serializer must have dumps(value) -> bytes and loads(bytes) -> value methods"
        )
    hint = " (was a class passed instead of an instance?)" if isinstance(serializer, type) else ""
    try:
        data = dumps(_PROBE)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"serializer.dumps failed on a plain session record{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, bytes):
        raise ImproperlyConfigured(
            f"serializer.dumps must return bytes, not {type(data).__name__}"
            + (" (json.dumps returns str: use JSONSerializer)" if isinstance(data, str) else "")
        )
    try:
        back = loads(data)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"serializer.loads failed on what its dumps wrote{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    if back != _PROBE:
        raise ImproperlyConfigured(
            "serializer.loads did not give back what dumps was given (strings must decode "
            "as str, mappings as dicts, e.g. msgpack needs raw=False): sessions written "
            "with it could not be read back"
        )
    return serializer  # type: ignore[no-any-return]


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
