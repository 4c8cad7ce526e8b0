"""The persisted form of a session: data plus the times that govern its expiry.

A record is one or more *frames*. The first frame is a snapshot; each later
frame is a patch (keys set, keys removed, new times) appended by a commit
that changed only those keys. Replaying frames in order is what lets two
concurrent requests that changed different keys both persist, without either
request knowing about the other. Cookies always carry a single frame.

Frame fields (short names, because cookies are small):

``c``  created: unix seconds of the session's creation (absolute timeout)
``i``  issued: unix seconds of this save
``e``  expires: unix seconds after which the record is void, or null
``x``  custom expiry, relative seconds (``0`` = at browser close)
``X``  custom expiry, absolute unix seconds
``z``  present in snapshots: start from an empty mapping
``s``  keys set, with their values
``r``  keys removed

This module knows the frame format and nothing about cookies, stores or ASGI.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .serializers import Serializer

__all__ = [
    "COOKIE_HEAD",
    "Expiry",
    "Record",
    "decode_frames",
    "encode_frame",
    "frame_bytes",
    "pack_cookie",
    "unpack_expiry",
]

Expiry = int | tuple[str, int] | None
"""A custom expiry set on a session: ``None`` (the middleware's max_age),
relative seconds (``0`` = browser close), or ``("at", unix_seconds)``."""

_LEN = struct.Struct(">I")

COOKIE_HEAD = struct.Struct(">IIIBq")
"""Cookies carry their times in a fixed binary head before the serialised
data (created, issued, expires or 0, custom-expiry kind, custom-expiry value):
smaller than the same fields in JSON, and unpacked without parsing."""

_EXPIRY_NONE, _EXPIRY_RELATIVE, _EXPIRY_AT = 0, 1, 2


def pack_cookie(
    data: bytes, *, created: int, issued: int, expires: int | None, expiry: Expiry
) -> bytes:
    """A cookie plaintext: the binary head, then the serialised data."""
    if expiry is None:
        kind, value = _EXPIRY_NONE, 0
    elif isinstance(expiry, tuple):
        kind, value = _EXPIRY_AT, expiry[1]
    else:
        kind, value = _EXPIRY_RELATIVE, expiry
    return COOKIE_HEAD.pack(created, issued, expires or 0, kind, value) + data


def unpack_expiry(kind: int, value: int) -> Expiry:
    """The custom expiry stored in a cookie head. Raises ValueError if unknown."""
    if kind == _EXPIRY_NONE:
        return None
    if kind == _EXPIRY_RELATIVE:
        return value
    if kind == _EXPIRY_AT:
        return ("at", value)
    raise ValueError("malformed cookie head")


@dataclass(slots=True)
class Record:
    """A decoded session record."""

    data: dict[str, Any] = field(default_factory=dict)
    created: int = 0
    issued: int = 0
    expires: int | None = None
    expiry: Expiry = None
    frames: int = 0

    def apply(self, frame: Any) -> None:
        """Replay one frame onto this record. Raises ValueError on a malformed frame."""
        if not isinstance(frame, dict):
            raise ValueError("frame is not a mapping")
        if frame.get("z"):
            self.data = {}
        changes = frame.get("s")
        if changes:
            if not isinstance(changes, dict):
                raise ValueError("malformed frame")
            self.data.update(changes)
        removed = frame.get("r")
        if removed:
            # A tuple too: msgpack's ``use_list=False`` decodes arrays as tuples.
            if not isinstance(removed, (list, tuple)):
                raise ValueError("malformed frame")
            for key in removed:
                self.data.pop(key, None)
        if "c" in frame:
            self.created = _int(frame["c"])
        self.issued = _int(frame.get("i", self.issued))
        expires = frame.get("e")
        self.expires = None if expires is None else _int(expires)
        if "X" in frame:
            self.expiry = ("at", _int(frame["X"]))
        elif "x" in frame:
            self.expiry = _int(frame["x"])
        else:
            self.expiry = None
        self.frames += 1


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError("malformed frame")
    return value


def encode_frame(
    *,
    issued: int,
    expires: int | None,
    expiry: Expiry,
    created: int | None = None,
    snapshot: dict[str, Any] | None = None,
    changed: dict[str, Any] | None = None,
    removed: list[str] | None = None,
) -> dict[str, Any]:
    """Build one frame as a plain dict (ready for a serializer)."""
    frame: dict[str, Any] = {}
    if created is not None:
        frame["c"] = created
    frame["i"] = issued
    frame["e"] = expires
    if expiry is not None:
        if isinstance(expiry, tuple):
            frame["X"] = expiry[1]
        else:
            frame["x"] = expiry
    if snapshot is not None:
        frame["z"] = 1
        frame["s"] = snapshot
    else:
        if changed:
            frame["s"] = changed
        if removed:
            frame["r"] = removed
    return frame


def frame_bytes(serializer: Serializer, frame: dict[str, Any]) -> bytes:
    """A frame as stored server-side: 4-byte big-endian length, then the payload."""
    payload = serializer.dumps(frame)
    return _LEN.pack(len(payload)) + payload


def decode_frames(serializer: Serializer, blob: bytes) -> Record:
    """Replay every length-prefixed frame in ``blob``. Raises ValueError if malformed.

    The serializer's own errors for a frame it cannot decode (``ValueError``,
    ``TypeError``) pass through; a ``RecursionError`` becomes a ``ValueError``.
    """
    record = Record()
    view = memoryview(blob)
    offset = 0
    end = len(blob)
    while offset < end:
        if end - offset < 4:
            raise ValueError("truncated record")
        (size,) = _LEN.unpack_from(view, offset)
        offset += 4
        if size > end - offset:
            raise ValueError("truncated record")
        try:
            frame = serializer.loads(bytes(view[offset : offset + size]))
        except RecursionError:
            # Nested deeper than this stack can decode (written by a process
            # with a higher limit, or encoded at a shallower stack): unreadable.
            raise ValueError("record nested too deeply to decode") from None
        record.apply(frame)
        offset += size
    if record.frames == 0:
        raise ValueError("empty record")
    return record
