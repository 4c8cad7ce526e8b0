"""FileStore: the conformance suite (asyncio and trio) and its own promises."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import FileStore
from asgi_sessions.testing import StoreConformance, new_key

ROOT = Path(__file__).resolve().parents[2]


class TestFileStoreConformance(StoreConformance):
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[FileStore]:
        store = FileStore(tmp_path / "sessions")
        yield store
        await store.close()


pytestmark = pytest.mark.anyio


def _header(expires: float) -> bytes:
    return b"ASF1" + struct.pack(">Q", int(expires * 1000))


def _set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


async def test_permissions(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    key = new_key()
    await store.create(key, b"secret", 60)
    await store.update(key, b"secret 2", 60)
    assert stat.S_IMODE(os.stat(tmp_path / "sessions").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "sessions" / key).st_mode) == 0o600
    for lock in (tmp_path / "sessions" / ".locks").iterdir():
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "../" + "a" * 61,
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "a" * 63 + "\n",
        "a" * 64 + "/",
        "a" * 64 + "\x00",
        "",
        "a" * 65,
        "٣" * 64,  # a non-ASCII digit
    ],
)
async def test_keys_that_could_escape_are_refused(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "sessions")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.read(key),
        lambda: store.create(key, b"x", 60),
        lambda: store.update(key, b"x", 60),
        lambda: store.append(key, b"x", 60),
        lambda: store.replace(key, b"", b"x", 60),
        lambda: store.touch(key, 60),
        lambda: store.delete(key),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="64 lowercase hex"):
            await call()
    assert not (tmp_path / "sessions").exists() or os.listdir(tmp_path / "sessions") == []


async def test_record_layout_header_then_data(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    before = time.time()
    await store.create(key, b"\x00data", 60)
    raw = (tmp_path / "s" / key).read_bytes()
    assert raw[:4] == b"ASF1"
    expires = struct.unpack(">Q", raw[4:12])[0] / 1000
    assert before + 59 < expires < time.time() + 61
    assert raw[12:] == b"\x00data"
    # The mtime mirrors the expiry, as a hint for clear_expired.
    assert abs(os.stat(tmp_path / "s" / key).st_mtime - expires) < 0.01


async def test_the_header_decides_not_the_mtime(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    expired, live = new_key(), new_key()
    (tmp_path / "s").mkdir(mode=0o700)
    (tmp_path / "s" / expired).write_bytes(_header(time.time() - 5) + b"old")
    _set_mtime(tmp_path / "s" / expired, time.time() + 3600)  # a lying hint
    (tmp_path / "s" / live).write_bytes(_header(time.time() + 3600) + b"live")
    _set_mtime(tmp_path / "s" / live, time.time() - 3600)  # e.g. copied without -p
    assert await store.read(expired) is None
    assert await store.read(live) == b"live"
    assert await store.clear_expired() == 0  # the lying hint only delays the cleanup
    assert await store.read(live) == b"live"
    assert await store.create(expired, b"new", 60) is True


async def test_foreign_or_truncated_files_are_not_records(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    short, foreign = new_key(), new_key()
    (tmp_path / "s").mkdir(mode=0o700)
    (tmp_path / "s" / short).write_bytes(b"ASF1\x00")
    (tmp_path / "s" / foreign).write_bytes(b"XXXX" + b"\xff" * 8 + b"data")
    for key in (short, foreign):
        assert await store.read(key) is None
        assert await store.update(key, b"x", 60) is False
    # A truncated record of ours goes; a foreign file is not ours to delete.
    assert await store.clear_expired() == 1
    assert sorted(os.listdir(tmp_path / "s")) == sorted([".locks", foreign])


async def test_survives_a_new_instance(tmp_path: Path) -> None:
    key, touched = new_key(), new_key()
    first = FileStore(tmp_path / "s")
    await first.create(key, b"kept", 60)
    await first.create(touched, b"t", 60)
    await first.touch(touched, 3600)
    await first.close()
    second = FileStore(tmp_path / "s")
    assert await second.read(key) == b"kept"
    assert await second.append(key, b"+", 60) is True
    assert await second.read(key) == b"kept+"
    assert await second.create(key, b"again", 60) is False
    raw = (tmp_path / "s" / touched).read_bytes()
    assert struct.unpack(">Q", raw[4:12])[0] / 1000 > time.time() + 3000


async def test_touch_rewrites_only_the_header(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    await store.create(key, b"data", 5)
    path = tmp_path / "s" / key
    inode = os.stat(path).st_ino
    await store.touch(key, 3600)
    after = os.stat(path)
    assert after.st_ino == inode  # not a new file: no copy of the data
    assert after.st_mtime > time.time() + 3000
    raw = path.read_bytes()
    assert raw[12:] == b"data"
    assert struct.unpack(">Q", raw[4:12])[0] / 1000 > time.time() + 3000


async def test_stale_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    await store.create(key, b"live", 60)
    crashed = tmp_path / "s" / ".tmp-crashed"
    crashed.write_bytes(_header(time.time() + 60) + b"half a rec")
    _set_mtime(crashed, time.time() - 7200)
    in_flight = tmp_path / "s" / ".tmp-writing"  # a write in progress right now
    in_flight.write_bytes(b"")
    assert await store.read(key) == b"live"
    assert await store.clear_expired() == 0
    assert not crashed.exists()
    assert in_flight.exists()
    assert await store.read(key) == b"live"


async def test_clear_expired_skips_live_records_and_counts_dead_ones(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    live = [new_key() for _ in range(5)]
    dead = [new_key() for _ in range(7)]
    for key in live:
        await store.create(key, b"live", 600)
    (tmp_path / "s" / "not-a-key.txt").write_bytes(b"left alone")
    for key in dead:
        (tmp_path / "s" / key).write_bytes(_header(time.time() - 1) + b"dead")
    assert await store.clear_expired() == 7
    assert await store.clear_expired() == 0
    assert sorted(os.listdir(tmp_path / "s")) == sorted([".locks", "not-a-key.txt", *live])


async def test_a_removed_directory_is_recreated(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    await store.create(key, b"x", 60)
    shutil.rmtree(tmp_path / "s")
    assert await store.read(key) is None
    assert await store.create(key, b"y", 60) is True
    assert await store.read(key) == b"y"
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700


async def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    target = tmp_path / "elsewhere"
    target.write_bytes(_header(time.time() + 60) + b"planted")
    (tmp_path / "s").mkdir(mode=0o700)
    (tmp_path / "s" / key).symlink_to(target)
    # Not a record this store wrote: no record (not an outage on every request).
    assert await store.read(key) is None
    assert await store.read_with_ttl(key) is None
    assert await store.update(key, b"overwrite", 60) is False
    await store.touch(key, 60)
    assert await store.take(key) is None
    assert target.read_bytes().endswith(b"planted")


async def test_a_fifo_under_a_record_name_is_no_record(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the thread,
    # and the key's lock with it, would hang for good.
    store = FileStore(tmp_path / "s", timeout=1)
    key = new_key()
    (tmp_path / "s").mkdir(mode=0o700)
    os.mkfifo(tmp_path / "s" / key, 0o600)
    with anyio.fail_after(5):
        assert await store.read(key) is None
        await store.touch(key, 60)
        assert await store.append(key, b"x", 60) is False
        assert await store.take(key) is None
        assert await store.clear_expired() == 0


async def test_a_lock_held_elsewhere_times_out_as_unavailable(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s", timeout=0.3)
    key = new_key()
    await store.create(key, b"before", 60)
    # Another process's flock, as far as the store can tell (a separate open file).
    fd = os.open(tmp_path / "s" / ".locks" / f"{key[:2]}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable, match="did not answer") as caught:
            await store.update(key, b"after", 60)
        assert time.monotonic() - started < 2
        assert key not in str(caught.value)
        assert await store.read(key) == b"before"  # reads take no lock
    finally:
        os.close(fd)
    assert await store.update(key, b"after", 60) is True
    assert await store.read(key) == b"after"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_operation_cancelled_from_outside_changes_nothing_after(tmp_path: Path) -> None:
    # The server cancels a request whose client went away (or an app's own
    # timeout fires) while the worker thread waits for a lock: the thread must
    # not go on to make the change once nobody awaits it (at a login, a take
    # landing after the request was gone would log the user out).
    store = FileStore(tmp_path / "s", timeout=5)
    key = new_key()
    await store.create(key, b"before", 60)
    fd = os.open(tmp_path / "s" / ".locks" / f"{key[:2]}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with anyio.move_on_after(0.2) as scope:
            await store.update(key, b"after", 60)
        assert scope.cancelled_caught
        with anyio.move_on_after(0.2) as scope:
            await store.take(key)
        assert scope.cancelled_caught
    finally:
        os.close(fd)  # the waiting threads get the lock now
    await anyio.sleep(0.3)
    assert await store.read(key) == b"before"


async def test_clear_expired_never_deletes_a_file_that_is_not_a_record(tmp_path: Path) -> None:
    # FileStore("/tmp") by mistake, or a directory shared with something
    # else: a file whose name happens to be 64 hex digits is not ours.
    store = FileStore(tmp_path / "s")
    ours, foreign, empty = new_key(), new_key(), new_key()
    await store.create(ours, b"x", 1)
    (tmp_path / "s" / foreign).write_bytes(b"someone else's data, not a session record")
    (tmp_path / "s" / empty).write_bytes(b"")
    await anyio.sleep(1.1)
    assert await store.clear_expired() == 1
    assert not (tmp_path / "s" / ours).exists()
    assert (tmp_path / "s" / foreign).read_bytes() == b"someone else's data, not a session record"
    assert (tmp_path / "s" / empty).exists()
    assert await store.read(foreign) is None  # still no session either


async def test_clear_expired_skips_a_busy_key_and_clears_the_rest(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s", timeout=0.3)
    keys = [new_key() for _ in range(40)]
    for key in keys:
        await store.create(key, b"x", 1)
    busy = keys[0]
    await anyio.sleep(1.1)
    fd = os.open(tmp_path / "s" / ".locks" / f"{busy[:2]}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is writing this shard
        removed = await store.clear_expired()
    finally:
        os.close(fd)
    left = {key for key in keys if (tmp_path / "s" / key).exists()}
    assert busy in left
    assert removed == len(keys) - len(left)
    assert {key[:2] for key in left} == {busy[:2]}, "keys of other shards were kept"
    assert await store.clear_expired() == len(left)


class _SlowDisk(FileStore):
    """Once stalled, reads take longer than the store's timeout."""

    stalled = False

    def _load(self, path: Path, size: int = -1) -> tuple[int, bytes] | None:
        if self.stalled:
            time.sleep(0.5)
        return super()._load(path, size)


async def test_a_take_that_timed_out_keeps_the_record(tmp_path: Path) -> None:
    # The caller got a 503 and issued no new id: if the abandoned thread
    # went on to delete the record, the user would be logged out.
    store = _SlowDisk(tmp_path / "s", timeout=0.3)
    key = new_key()
    await store.create(key, b"logged in", 60)
    store.stalled = True
    with pytest.raises(SessionStoreUnavailable, match="did not answer"):
        await store.take(key)
    await anyio.sleep(0.6)  # the thread has finished by now
    assert await FileStore(tmp_path / "s").read(key) == b"logged in"


class _SlowSync(FileStore):
    """Once stalled, the directory fsync after a rename outlasts the store's timeout."""

    stalled = False

    def _fsync_directory(self) -> None:
        if self.stalled:
            time.sleep(0.5)
        super()._fsync_directory()


async def test_a_write_past_its_point_of_no_return_reports_what_it_did(tmp_path: Path) -> None:
    # The new record was already published when the timeout struck: a 503
    # would tell the caller nothing was written (and at a login, the session
    # layer would then delete the copy it believes is the only one left).
    store = _SlowSync(tmp_path / "s", timeout=0.3)
    key = new_key()
    await store.create(key, b"before", 60)
    store.stalled = True
    started = time.monotonic()
    assert await store.update(key, b"after", 60) is True
    assert 0.5 <= time.monotonic() - started < 3
    assert await FileStore(tmp_path / "s").read(key) == b"after"


def test_bad_timeout_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        FileStore(tmp_path, timeout=0)


async def test_without_fsync(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s", fsync=False)
    key = new_key()
    assert await store.create(key, b"x", 60)
    assert await store.append(key, b"y", 60)
    assert await store.read(key) == b"xy"


_RACE = textwrap.dedent(
    """
    import sys, anyio
    from asgi_sessions.stores import FileStore

    async def main(directory, key, index):
        store = FileStore(directory)
        won = await store.create(key, b"", 60)
        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(store.append, key, b"<%d.%d>" % (index, n), 60)
        print("won" if won else "lost")

    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


def test_create_and_append_are_atomic_across_processes(tmp_path: Path) -> None:
    """Six processes race to create one key, then each appends 10 frames: one wins, none lost."""
    directory, key = str(tmp_path / "shared"), new_key()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, directory, key, str(index)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for index in range(6)
    ]
    outputs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6
    assert outputs.count("won") == 1, outputs
    stored = anyio.run(FileStore(directory).read, key) or b""
    frames = sorted(stored.decode().replace("><", ">\n<").split())
    assert frames == sorted(f"<{i}.{n}>" for i in range(6) for n in range(10))
