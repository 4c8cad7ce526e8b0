"""RedisStore against real Redis: the local server, a 3-node cluster and a Sentinel."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions.errors import SessionStoreUnavailable
from asgi_sessions.stores import RedisStore
from asgi_sessions.testing import StoreConformance, new_key

from .redis_servers import (
    RedisServer,
    cli,
    free_cluster_port,
    free_port,
    require_redis_binaries,
    wait_for_port,
)

REDIS_URL = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio is asyncio-only


async def _reachable(url: str) -> None:
    client = Redis.from_url(url, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        reason = f"Redis at {url} not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        await client.aclose()


def _prefix() -> str:
    return f"test:{secrets.token_hex(4)}:"


async def _drop(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class TestLocalRedisConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self) -> AsyncIterator[RedisStore]:
        await _reachable(REDIS_URL)
        prefix = _prefix()
        store = RedisStore(REDIS_URL, prefix=prefix)
        yield store
        await store.close()
        await _drop(REDIS_URL, prefix)


# -- a throwaway cluster and sentinel ------------------------------------------------


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    require_redis_binaries()
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    for index in range(3):
        port = free_cluster_port()
        node = RedisServer(
            base / str(index),
            port,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(base / f"nodes-{index}.conf"),
            "--cluster-node-timeout",
            "2000",
        )
        node.start()
        nodes.append(node)
    try:
        cli(
            nodes[0].port,
            "--cluster",
            "create",
            *[f"127.0.0.1:{n.port}" for n in nodes],
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        )
        deadline = time.monotonic() + 20
        while "cluster_state:ok" not in cli(nodes[0].port, "CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.1)
        yield [n.port for n in nodes]
    finally:
        for node in nodes:
            node.stop()


class TestClusterConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self, redis_cluster: list[int]) -> AsyncIterator[RedisStore]:
        client = RedisCluster(host="127.0.0.1", port=redis_cluster[0])
        # Open a connection to every node before the concurrency tests: redis-py's
        # cluster client can trip over its own half-open connections otherwise.
        await client.initialize()
        await client.ping(target_nodes=RedisCluster.ALL_NODES)
        store = RedisStore(client, prefix=_prefix())
        yield store
        await client.aclose()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require_redis_binaries()
    base = tmp_path_factory.mktemp("sentinel")
    master = RedisServer(base / "master")
    master.start()
    port = free_port()
    config = base / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\n"
        f"sentinel monitor sessions 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds sessions 5000\n"
    )
    sentinel_server = RedisServer(base / "sentinel", port, "--sentinel")
    # redis-server --sentinel needs its config file first on the command line.
    sentinel_server.extra = ()
    import subprocess

    from .redis_servers import REDIS_SERVER

    assert REDIS_SERVER is not None
    process = subprocess.Popen(
        [REDIS_SERVER, str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)
        master.stop()


class TestSentinelConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self, sentinel: int) -> AsyncIterator[RedisStore]:
        manager = Sentinel([("127.0.0.1", sentinel)], socket_timeout=2)
        client = manager.master_for("sessions")
        store = RedisStore(client, prefix=_prefix())
        yield store
        await client.aclose()


# -- round trips, counted by the server ---------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, so INFO commandstats counts only our commands."""
    require_redis_binaries()
    server = RedisServer(tmp_path / "redis", None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _command_counts(server: RedisServer) -> dict[str, int]:
    counts = {}
    for line in server.info("commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            counts[name.removeprefix("cmdstat_")] = int(rest.split(",")[0].split("=")[1])
    return counts


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.mark.anyio
async def test_each_operation_is_one_command(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url)
    key = new_key()
    await store.append(key, b"warm the script cache", 60)  # EVALSHA miss -> EVAL, once
    await store.replace(key, b"", b"", 60)
    # commandstats also counts the commands a script runs inside Redis; the
    # round trip is the one EVALSHA.
    expected = {
        "create": {"set": 1},
        "read": {"get": 1},
        "update": {"set": 1},
        "append": {"evalsha": 1, "exists": 1, "append": 1, "expire": 1},
        "replace": {"evalsha": 1, "get": 1, "set": 1},
        "touch": {"expire": 1},
        "delete": {"del": 1},
    }
    operations = {
        "create": lambda: store.create(key, b"a", 60),
        "read": lambda: store.read(key),
        "update": lambda: store.update(key, b"b", 60),
        "append": lambda: store.append(key, b"c", 60),
        "replace": lambda: store.replace(key, b"bc", b"d", 60),
        "touch": lambda: store.touch(key, 60),
        "delete": lambda: store.delete(key),
    }
    for name, operation in operations.items():
        before = _command_counts(private_redis)
        await operation()
        after = _command_counts(private_redis)
        delta = _delta(before, after)
        delta.pop("info", None)
        assert delta == expected[name], name
    await store.close()


# -- faults ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_down_redis_raises_unavailable_quickly_and_recovers(
    private_redis: RedisServer,
) -> None:
    store = RedisStore(private_redis.url, timeout=0.5)
    key = new_key()
    assert await store.create(key, b"kept", 600)
    private_redis.stop()
    for operation in (
        lambda: store.read(key),
        lambda: store.create(new_key(), b"x", 60),
        lambda: store.update(key, b"x", 60),
        lambda: store.append(key, b"x", 60),
        lambda: store.touch(key, 60),
        lambda: store.delete(key),
    ):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable):
            await operation()
        assert time.monotonic() - started < 3
    private_redis.start()
    assert await store.read(key) == b"kept"
    await store.close()


def _fault_app(store: RedisStore) -> Starlette:
    async def login(request: Request) -> Response:
        request.session["user"] = request.path_params["name"]
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return JSONResponse({"user": request.session.get("user")})

    async def health(request: Request) -> Response:
        return PlainTextResponse("alive")

    async def unavailable(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("try again later", status_code=503)

    return Starlette(
        routes=[Route("/login/{name}", login), Route("/whoami", whoami), Route("/health", health)],
        middleware=[Middleware(SessionMiddleware, store=store)],
        exception_handlers={SessionStoreUnavailable: unavailable},
    )


def test_outage_through_the_middleware(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, timeout=0.5)
    app = _fault_app(store)
    # One client (one event loop for the Redis connections), two users' cookies.
    with TestClient(app) as client:
        assert client.get("/login/alice").status_code == 200
        alice = client.cookies["session"]
        client.cookies.clear()
        assert client.get("/login/bob").status_code == 200
        bob = client.cookies["session"]

        private_redis.stop()
        client.cookies.set("session", alice)
        started = time.monotonic()
        assert client.get("/whoami").status_code == 503
        assert time.monotonic() - started < 3
        assert client.get("/login/mallory").status_code == 503  # load failed: nothing written
        assert client.get("/health").text == "alive"  # autoload failed; route never touched it

        private_redis.start()
        assert client.get("/whoami").json() == {"user": "alice"}
        client.cookies.set("session", bob)
        assert client.get("/whoami").json() == {"user": "bob"}


# -- what the store holds -----------------------------------------------------------------


def test_keys_hold_no_session_id(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, prefix="session:")
    app = _fault_app(store)
    with TestClient(app) as client:
        client.get("/login/alice")
        session_id = client.cookies["session"]
    keys = cli(private_redis.port, "--scan").split()
    assert keys == ["session:" + hashlib.sha256(session_id.encode()).hexdigest()]
    assert all(session_id not in key for key in keys)


def test_store_from_url() -> None:
    from asgi_sessions.stores import store_from_url

    store = store_from_url(REDIS_URL)
    assert isinstance(store, RedisStore)
