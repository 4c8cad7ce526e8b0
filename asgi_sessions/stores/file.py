"""FileStore: one file per session in a directory.

For single-machine deployments that want sessions to survive restarts
without running a server. Each record is a file named by its store key (the
SHA-256 of the session id, so file names are useless to whoever can list the
directory). The file starts with a 12-byte header, ``b"ASF1"`` and the expiry
as milliseconds since the epoch (big-endian), followed by the record's bytes.
The header is the truth and is checked on every read; the file's mtime is
set to the same instant as a hint only, so :meth:`FileStore.clear_expired`
can skip live records with a ``stat`` instead of opening them. A file whose
mtime something else changed is therefore still read correctly.

Correctness across threads and processes:

- every write goes to a temporary file in the same directory that is
  fsynced and then renamed over the record (``os.replace``), so a reader
  never sees a half-written record and a crash never leaves one; a crash
  can leave a temporary file, which readers ignore and ``clear_expired``
  removes once it is an hour old;
- every write to a key holds that key's lock: a ``threading`` lock for the
  threads of this process, then an ``flock`` on one of 256 lock files in
  ``.locks/`` (chosen by the key's first byte) for other processes. So
  create-only, update-only, append and compare-and-set are atomic even
  between worker processes, and an update can never resurrect a record a
  concurrent delete removed. Readers take no lock: they open one complete
  file or none;
- ``touch`` rewrites only the 8 expiry bytes of the header, in place;
- keys must be 64 lowercase hex digits before they touch the file system
  (anything else raises ``ValueError``), so no key can escape the directory,
  and record files are opened with ``O_NOFOLLOW`` and ``O_NONBLOCK``: a
  symlink, FIFO or anything else but a regular file under a record's name
  reads as no record;
- a call that times out has changed nothing, and one that has passed its
  point of no return (a rename, an unlink) is waited for: its answer is the
  true one, a moment late.

The directory is created 0700 and files 0600. Blocking calls run in a worker
thread through anyio, so the store works under asyncio and trio. Each call
is bounded by ``timeout`` (a lock held too long, a hung network file
system): past it the caller gets :class:`SessionStoreUnavailable`, and the
worker gives up before its final rename if it can.

This module knows files, locks and the header layout; it never sees a
session id, a cookie or what the bytes mean.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..crypto import is_store_key
from ..errors import SessionStoreUnavailable
from .base import SessionStore, StoreKey

__all__ = ["FileStore"]

_T = TypeVar("_T")
_MAGIC = b"ASF1"
_HEADER = struct.Struct(">4sQ")  # magic, expiry in ms since the epoch
_EXPIRY = struct.Struct(">Q")
_EXPIRY_OFFSET = len(_MAGIC)
_TMP_PREFIX = ".tmp-"
_LOCKS = ".locks"
_STALE_TMP_SECONDS = 3600
# O_NONBLOCK: a FIFO planted under a record's name must not hang the thread
# that opens it (and with it the key's lock).
_OPEN_RECORD = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _open_record(path: Path, flags: int) -> int | None:
    """A descriptor of the regular file at ``path``, or None if there is none.

    Anything else under a record's name (a symlink, a FIFO, a directory) is
    not a record this store wrote: it reads as no record, instead of an
    outage on every request that carries the key.
    """
    try:
        fd = os.open(path, flags | _OPEN_RECORD)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


class _Timeout(TimeoutError):
    """A lock was not acquired, or a write not finished, before the deadline."""


class _Deadline:
    """When the caller stops waiting, and the point of no return it shares with the worker.

    A thread cannot be interrupted, so on timeout it is left to finish on
    its own. Before each change it cannot undo (publishing a record,
    removing one) the worker calls :meth:`commit`; a caller that times out
    or is cancelled calls :meth:`abandon`. Whichever comes first decides:
    an abandoned worker changes nothing, and a timed-out caller that comes
    too late for a committed worker waits for its answer (a cancelled one
    leaves: nobody is there to take it). A clock check alone left a
    window between the check and the change: a 503 whose change had landed,
    and at a login both copies of the session gone.
    """

    __slots__ = ("_lock", "_state", "at", "done", "error")

    def __init__(self, at: float) -> None:
        self.at = at
        self._lock = threading.Lock()
        self._state = "running"
        self.done = threading.Event()
        self.error: BaseException | None = None

    def left(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def commit(self) -> None:
        """Worker: about to change something for good; raises ``_Timeout`` if too late."""
        with self._lock:
            if self._state == "abandoned" or self.passed():
                raise _Timeout
            self._state = "committed"

    def abandon(self) -> bool:
        """Caller, on timeout: True if the worker will change nothing."""
        with self._lock:
            if self._state == "committed":
                return False
            self._state = "abandoned"
            return True


def _expired_record(loaded: tuple[int, bytes] | None) -> bool:
    """Whether ``loaded`` (see ``FileStore._load``) is a record of ours, expired.

    Only ours: a file whose name happens to be a key but whose header is not
    (a directory shared by mistake, ``FileStore("/tmp")``) reads as no
    session, and is never deleted.
    """
    return loaded is not None and loaded[1].startswith(_MAGIC) and loaded[0] <= _now_ms()


def _check_key(key: StoreKey) -> StoreKey:
    if not isinstance(key, str) or not is_store_key(key):
        raise ValueError("store keys are 64 lowercase hex digits")
    return key


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _expiry(header: bytes) -> int:
    """The header's expiry in ms; 0 (long expired) for a short or foreign file."""
    if len(header) < _HEADER.size:
        return 0
    magic, expires = _HEADER.unpack_from(header)
    return int(expires) if magic == _MAGIC else 0


class FileStore(SessionStore):
    """Sessions as files in ``directory`` (created 0700 if missing).

    ``timeout`` bounds each operation, lock waits included. ``fsync=False``
    skips the two fsyncs of each write (file and directory): faster, but a
    power cut may lose the latest writes; use it only on throwaway data.

    An operation that times out, or is cancelled (a server dropping the
    request of a client that left), changes nothing unless its worker thread
    had already begun the change; then the change completes.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        timeout: float = 2.0,
        fsync: bool = True,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.directory = Path(directory).resolve()
        self.timeout = timeout
        self.fsync = fsync
        self._locks = self.directory / _LOCKS
        # One per lock file: threads of this process queue here instead of polling flock.
        self._thread_locks = [threading.Lock() for _ in range(256)]
        self._ready = False

    # -- plumbing --------------------------------------------------------------

    def _prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._locks.mkdir(mode=0o700, exist_ok=True)
        self._ready = True

    async def _run(self, work: Callable[[_Deadline], _T], *, bounded: bool = True) -> _T:
        """Run ``work(deadline)`` in a worker thread; OS errors become unavailability."""
        deadline = _Deadline(time.monotonic() + self.timeout)
        result: list[_T] = []

        def call() -> _T:
            try:
                if not self._ready:
                    self._prepare()
                result.append(work(deadline))
                return result[0]
            except BaseException as exc:
                deadline.error = exc
                raise
            finally:
                deadline.done.set()

        try:
            if not bounded:
                return await anyio.to_thread.run_sync(call)
            with anyio.move_on_after(self.timeout):
                try:
                    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
                except anyio.get_cancelled_exc_class():
                    # The timeout below, or a cancel from outside (the server
                    # drops a request whose client left): either way nobody
                    # will act on the answer, so the worker must not make a
                    # change it has not begun. Idempotent with the check below.
                    deadline.abandon()
                    raise
            if deadline.abandon():
                raise _Timeout
            # Past its point of no return: the change stands, so its answer is
            # the one to give, a moment late (a rename, a directory fsync).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(deadline.done.wait)
            if deadline.error is not None:
                raise deadline.error
            return result[0]
        except TimeoutError:
            raise SessionStoreUnavailable(
                f"file session store did not answer within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            self._ready = False  # recreate the directory if it was removed
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            raise SessionStoreUnavailable(f"file session store failed: {name}") from None

    @contextlib.contextmanager
    def _locked(self, key: StoreKey, deadline: _Deadline) -> Iterator[None]:
        """Hold ``key``'s lock against this process's threads and other processes."""
        shard = key[:2]
        guard = self._thread_locks[int(shard, 16)]
        if not guard.acquire(timeout=deadline.left()):
            raise _Timeout
        try:
            lock_file = self._locks / f"{shard}.lock"
            flags = os.O_RDWR | os.O_CREAT | _OPEN_RECORD
            try:
                fd = os.open(lock_file, flags, 0o600)
            except FileNotFoundError:  # the directory was removed under us: recreate it
                self._prepare()
                fd = os.open(lock_file, flags, 0o600)
            try:
                delay = 0.0005
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        # Another process holds it: poll, so the wait stays bounded.
                        if deadline.passed():
                            raise _Timeout from None
                        time.sleep(delay)
                        delay = min(delay * 2, 0.01)
                if deadline.passed():
                    raise _Timeout  # the caller has given up: change nothing
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            guard.release()

    def _path(self, key: StoreKey) -> Path:
        return self.directory / _check_key(key)

    def _load(self, path: Path, size: int = -1) -> tuple[int, bytes] | None:
        """``(expiry_ms, file bytes)`` with at most ``size`` bytes, or None if absent."""
        fd = _open_record(path, os.O_RDONLY)
        if fd is None:
            return None
        with open(fd, "rb") as handle:
            blob = handle.read(size)
        return _expiry(blob), blob

    def _read_live(self, path: Path) -> bytes | None:
        loaded = self._load(path)
        if loaded is None or loaded[0] <= _now_ms():
            return None
        return loaded[1][_HEADER.size :]

    def _write(self, path: Path, data: bytes, ttl: int, deadline: _Deadline) -> None:
        """Replace ``path`` atomically by a record of ``data`` living ``ttl`` seconds."""
        expires = _now_ms() + ttl * 1000
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.directory)  # 0600, O_EXCL
        try:
            with open(fd, "wb") as handle:
                handle.write(_HEADER.pack(_MAGIC, expires))
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(fd)
                deadline.commit()  # or, if the caller has given up, do not publish
                os.replace(tmp, path)
                with contextlib.suppress(OSError):  # only a hint for clear_expired
                    os.utime(fd, ns=(expires * 1_000_000, expires * 1_000_000))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.fsync:
            self._fsync_directory()

    def _fsync_directory(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- the store -------------------------------------------------------------

    async def read(self, key: StoreKey) -> bytes | None:
        """The record's bytes, or ``None`` if absent or expired. Takes no lock."""
        path = self._path(key)
        return await self._run(lambda _: self._read_live(path))

    async def read_with_ttl(self, key: StoreKey) -> tuple[bytes, int | None] | None:
        """The record's bytes and whole seconds left, from the same single read."""
        path = self._path(key)

        def read(deadline: _Deadline) -> tuple[bytes, int | None] | None:
            loaded = self._load(path)
            if loaded is None:
                return None
            left = loaded[0] - _now_ms()
            if left <= 0:
                return None
            return loaded[1][_HEADER.size :], left // 1000

        return await self._run(read)

    async def create(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Write only if no live record exists (an expired one is replaced)."""
        path = self._path(key)

        def create(deadline: _Deadline) -> bool:
            with self._locked(key, deadline):
                if self._read_live(path) is not None:
                    return False
                self._write(path, data, ttl, deadline)
                return True

        return await self._run(create)

    async def update(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Replace only if a live record exists (never resurrects a deleted one)."""
        path = self._path(key)

        def update(deadline: _Deadline) -> bool:
            with self._locked(key, deadline):
                if self._read_live(path) is None:
                    return False
                self._write(path, data, ttl, deadline)
                return True

        return await self._run(update)

    async def append(self, key: StoreKey, data: bytes, ttl: int) -> bool:
        """Append atomically: copy, extend and rename, under the key's lock."""
        path = self._path(key)

        def append(deadline: _Deadline) -> bool:
            with self._locked(key, deadline):
                current = self._read_live(path)
                if current is None:
                    return False
                self._write(path, current + data, ttl, deadline)
                return True

        return await self._run(append)

    async def replace(self, key: StoreKey, expected: bytes, data: bytes, ttl: int) -> bool:
        """Compare-and-set of the record's prefix, under the key's lock."""
        path = self._path(key)

        def replace(deadline: _Deadline) -> bool:
            with self._locked(key, deadline):
                current = self._read_live(path)
                if current is None or not current.startswith(expected):
                    return False
                self._write(path, data + current[len(expected) :], ttl, deadline)
                return True

        return await self._run(replace)

    async def touch(self, key: StoreKey, ttl: int) -> None:
        """Rewrite only the header's expiry, in place; the data is not copied.

        Not fsynced: a crash can only lose the extension, never the record.
        """
        path = self._path(key)

        def touch(deadline: _Deadline) -> None:
            with self._locked(key, deadline):
                fd = _open_record(path, os.O_RDWR)
                if fd is None:
                    return
                try:
                    now = _now_ms()
                    if _expiry(os.pread(fd, _HEADER.size, 0)) <= now:
                        return  # expired records stay dead
                    expires = now + ttl * 1000
                    deadline.commit()
                    os.pwrite(fd, _EXPIRY.pack(expires), _EXPIRY_OFFSET)
                    with contextlib.suppress(OSError):
                        os.utime(fd, ns=(expires * 1_000_000, expires * 1_000_000))
                finally:
                    os.close(fd)

        await self._run(touch)

    async def delete(self, key: StoreKey) -> None:
        """Remove the record, if any (under the key's lock, so no write undoes it)."""
        path = self._path(key)

        def delete(deadline: _Deadline) -> None:
            with self._locked(key, deadline), contextlib.suppress(FileNotFoundError):
                deadline.commit()
                os.unlink(path)

        await self._run(delete)

    async def take(self, key: StoreKey) -> bytes | None:
        """Read and remove the record under the key's lock: no write lands in between."""
        path = self._path(key)

        def take(deadline: _Deadline) -> bytes | None:
            with self._locked(key, deadline):
                data = self._read_live(path)
                # If the caller gave up (a 503, no new id), keep the record.
                deadline.commit()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                return data

        return await self._run(take)

    async def clear_expired(self) -> int:
        """Delete expired records, and temporary files a crash left behind.

        A file named like a record but without a record's header is not ours
        and is left alone.

        Returns the number of records deleted. Not bounded by ``timeout`` as a
        whole (it scans the directory), only each lock wait is.
        """

        def clear(_: _Deadline) -> int:
            now_ns = time.time_ns()
            stale_tmp_ns = now_ns - _STALE_TMP_SECONDS * 1_000_000_000
            suspects: list[str] = []
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        mtime_ns = entry.stat(follow_symlinks=False).st_mtime_ns
                    except FileNotFoundError:
                        continue
                    if entry.name.startswith(_TMP_PREFIX):
                        if mtime_ns < stale_tmp_ns:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(entry.path)
                    elif is_store_key(entry.name) and mtime_ns <= now_ns:
                        # A future mtime is the expiry hint of a live record: skip it.
                        suspects.append(entry.name)
            removed = 0
            for name in suspects:
                path = self.directory / name
                if not _expired_record(self._load(path, _HEADER.size)):
                    continue
                try:
                    with self._locked(name, _Deadline(time.monotonic() + self.timeout)):
                        # Again, under the lock.
                        if _expired_record(self._load(path, _HEADER.size)):
                            os.unlink(path)
                            removed += 1
                except _Timeout:
                    continue  # busy, so in use: the next run sees it again
            return removed

        return await self._run(clear, bounded=False)
