"""FileStore: one file per session in a directory.

For single-machine deployments that want sessions to survive restarts
without running a server. Each record is a file named by its store key (the
SHA-256 of the session id, so file names are useless to whoever can list the
directory); its modification time *is* its expiry time, which makes
``touch`` a metadata update instead of a rewrite.

Correctness across processes and threads:

- every write goes to a temporary file that is fsynced and then renamed
  into place, so a reader never sees a half-written record and a crash
  never leaves one;
- writes to one key are serialised by an ``flock`` on one of 256 lock
  files (chosen by the key's first byte), so create-only, update-only,
  append and compare-and-set hold even between worker processes;
- keys are checked to be 64 lowercase hex digits before they touch the file
  system, so no key can escape the directory.

Files are created 0600 and the directory 0700. Blocking calls run in a
worker thread through anyio, so the store works under asyncio and trio.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from ..errors import SessionStoreUnavailable
from .base import SessionStore, StoreKey

__all__ = ["FileStore"]

_T = TypeVar("_T")
_KEY = re.compile(r"[0-9a-f]{64}\Z")
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600


def _check_key(key: StoreKey) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError("store keys are 64 lowercase hex digits")
    return key


class FileStore(SessionStore):
    """Sessions as files in ``directory`` (created 0700 if missing)."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.fsync = fsync
        self._locks = self.directory / ".locks"
        self._ready = False

    # -- plumbing --------------------------------------------------------------

    def _prepare(self) -> None:
        if not self._ready:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._locks.mkdir(mode=0o700, exist_ok=True)
            self._ready = True

    async def _run(self, func: Callable[[], _T]) -> _T:
        def call() -> _T:
            self._prepare()
            return func()

        try:
            return await anyio.to_thread.run_sync(call)
        except ValueError:
            raise
        except OSError as exc:
            raise SessionStoreUnavailable(
                f"file session store failed: {errno.errorcode.get(exc.errno or 0, 'error')}"
            ) from None

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        fd = os.open(self._locks / f"{key[:2]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _path(self, key: StoreKey) -> Path:
        return self.directory / _check_key(key)

    def _read_live(self, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            if os.fstat(fd).st_mtime <= time.time():
                return None
            return handle.read()

    def _write(self, path: Path, data: bytes, ttl: int) -> None:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            expires = time.time() + ttl
            os.utime(tmp, (expires, expires))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # -- the store -------------------------------------------------------------

    async def read(self, key: StoreKey) -> bytes | None:
        """The record's bytes, or ``None`` if absent or expired."""
        path = self._path(key)
        return await self._run(lambda: self._read_live(path))

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Write only if no live record exists (an expired one is replaced)."""
        path = self._path(key)

        def create() -> bool:
            with self._locked(key):
                if self._read_live(path) is not None:
                    return False
                self._write(path, data, ttl)
                return True

        return await self._run(create)

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Replace only if a live record exists."""
        path = self._path(key)

        def update() -> bool:
            with self._locked(key):
                if self._read_live(path) is None:
                    return False
                self._write(path, data, ttl)
                return True

        return await self._run(update)

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Append atomically: copy, extend and rename, under the key's lock."""
        path = self._path(key)

        def append() -> bool:
            with self._locked(key):
                current = self._read_live(path)
                if current is None:
                    return False
                self._write(path, current + data, ttl)
                return True

        return await self._run(append)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Compare-and-set of the record's prefix, under the key's lock."""
        path = self._path(key)

        def replace() -> bool:
            with self._locked(key):
                current = self._read_live(path)
                if current is None or not current.startswith(expected):
                    return False
                self._write(path, data + current[len(expected) :], ttl)
                return True

        return await self._run(replace)

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Move the expiry (the file's mtime) without rewriting the data."""
        path = self._path(key)

        def touch() -> None:
            with self._locked(key):
                if self._read_live(path) is None:
                    return
                expires = time.time() + ttl
                os.utime(path, (expires, expires))

        await self._run(touch)

    async def delete(self, key: StoreKey) -> None:
        """Remove the record, if any."""
        path = self._path(key)

        def delete() -> None:
            with self._locked(key), contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        await self._run(delete)

    async def clear_expired(self) -> int:
        """Delete expired records (and temporary files a crash left behind)."""

        def clear() -> int:
            removed = 0
            now = time.time()
            with os.scandir(self.directory) as entries:
                names = [
                    (entry.name, entry.stat().st_mtime) for entry in entries if entry.is_file()
                ]
            for name, mtime in names:
                if name.startswith(_TMP_PREFIX):
                    if mtime < now - _STALE_TMP_SECONDS:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.directory / name)
                    continue
                if not _KEY.match(name) or mtime > now:
                    continue
                with self._locked(name):
                    path = self.directory / name
                    try:
                        if os.stat(path).st_mtime <= time.time():
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
            return removed

        return await self._run(clear)
