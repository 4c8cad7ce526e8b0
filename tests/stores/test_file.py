"""FileStore: the conformance suite (asyncio and trio) and its own promises."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asgi_sessions.stores import FileStore
from asgi_sessions.testing import StoreConformance, new_key


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


async def test_permissions(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")
    key = new_key()
    await store.create(key, b"secret", 60)
    assert stat.S_IMODE(os.stat(tmp_path / "sessions").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "sessions" / key).st_mode) == 0o600


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "/etc/passwd", "a" * 63, "A" * 64, "g" * 64, "a" * 64 + "/", "", "a" * 65],
)
async def test_keys_that_could_escape_are_refused(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "sessions")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        await store.create(key, b"x", 60)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        await store.read(key)


async def test_survives_a_new_instance(tmp_path: Path) -> None:
    key = new_key()
    await FileStore(tmp_path / "s").create(key, b"kept", 60)
    assert await FileStore(tmp_path / "s").read(key) == b"kept"


async def test_touch_does_not_rewrite_the_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    await store.create(key, b"data", 5)
    inode = os.stat(tmp_path / "s" / key).st_ino
    await store.touch(key, 3600)
    after = os.stat(tmp_path / "s" / key)
    assert after.st_ino == inode
    assert after.st_mtime > time.time() + 3000


async def test_stale_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "s")
    key = new_key()
    await store.create(key, b"live", 60)
    leftover = tmp_path / "s" / ".tmp-crashed"
    leftover.write_bytes(b"half a record")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert await store.read(key) == b"live"
    assert await store.clear_expired() == 0
    assert not leftover.exists()
    assert await store.read(key) == b"live"


def test_create_is_exclusive_across_processes(tmp_path: Path) -> None:
    """Eight processes race to create one key: exactly one wins."""
    directory = tmp_path / "shared"
    key = new_key()
    script = textwrap.dedent(
        f"""
        import anyio, sys
        from asgi_sessions.stores import FileStore
        async def main():
            won = await FileStore({str(directory)!r}).create({key!r}, sys.argv[1].encode(), 60)
            print("won" if won else "lost")
        anyio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, env=env)
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert outputs.count("won") == 1, outputs
