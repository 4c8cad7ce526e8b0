"""RedisStore against real Redis: the local server, a 3-node cluster and a Sentinel.

Besides the conformance suite on all three, this proves what the store
promises on its own: one round trip per operation (counted on the connection
and by the server), bounded failures when Redis is down or hung, recovery
with the same store object, and keys that hold nothing usable as a session id.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import Sentinel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions.errors import ImproperlyConfigured, SessionStoreUnavailable
from asgi_sessions.stores import RedisStore
from asgi_sessions.testing import StoreConformance, new_key
from tests.backends import drop_redis_keys

from .redis_fixtures import RedisClusterNodes, RedisSentinel
from .redis_servers import REDIS_CLI, RedisServer, cli, require_redis_binaries

pytestmark = pytest.mark.redis

Operation = Callable[[], Awaitable[object]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio is asyncio-only


def _prefix() -> str:
    """A namespace of this test's own on a server other tests share."""
    return f"test:{secrets.token_hex(4)}:"


def _all_operations(store: RedisStore, key: str) -> dict[str, Operation]:
    """Every store method that talks to Redis, called on ``key``."""
    return {
        "read": lambda: store.read(key),
        "create": lambda: store.create(new_key(), b"x", 60),
        "update": lambda: store.update(key, b"x", 60),
        "append": lambda: store.append(key, b"x", 60),
        "replace": lambda: store.replace(key, b"x", b"y", 60),
        "compact_and_append": lambda: store.compact_and_append(key, b"x", b"y", b"z", 60),
        "touch": lambda: store.touch(key, 60),
        "delete": lambda: store.delete(key),
    }


def _keys_on_every_node(client: RedisCluster, prefix: str, per_node: int) -> dict[int, list[str]]:
    """Random store keys, ``per_node`` of them on each master (by port)."""
    by_port: dict[int, list[str]] = {}
    nodes = len(client.get_primaries())
    while len(by_port) < nodes or min(len(keys) for keys in by_port.values()) < per_node:
        key = new_key()
        node = client.get_node_from_key(prefix + key)
        assert node is not None
        by_port.setdefault(int(node.port), []).append(key)
    return by_port


async def _assert_unavailable(operation: Operation, key: str, within: float = 3.0) -> None:
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable) as caught:
        await operation()
    assert time.monotonic() - started < within
    assert key not in str(caught.value)


# -- conformance on the three topologies ----------------------------------------------


class TestLocalRedisConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self, redis_url: str) -> AsyncIterator[RedisStore]:
        prefix = _prefix()
        store = RedisStore(redis_url, prefix=prefix)
        yield store
        await store.close()
        await drop_redis_keys(prefix, redis_url)


class TestClusterConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self, redis_cluster: RedisClusterNodes) -> AsyncIterator[RedisStore]:
        client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        # Open a connection to every node before the concurrency tests: redis-py's
        # cluster client can trip over its own half-open connections otherwise.
        await client.initialize()
        await client.ping(target_nodes=RedisCluster.ALL_NODES)
        store = RedisStore(client, prefix=_prefix())
        yield store
        await client.aclose()


def _sentinel_client(sentinel: RedisSentinel, **options: Any) -> Redis:
    manager = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        [("127.0.0.1", sentinel.port)], socket_timeout=2, **options
    )
    client: Redis = manager.master_for(sentinel.name)
    return client


class TestSentinelConformance(StoreConformance):
    native_ttl = True

    @pytest.fixture
    async def store(self, redis_sentinel: RedisSentinel) -> AsyncIterator[RedisStore]:
        client = _sentinel_client(redis_sentinel)
        store = RedisStore(client, prefix=_prefix())
        yield store
        await client.aclose()


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ImproperlyConfigured):
        RedisStore("redis://127.0.0.1:6379/0", timeout=timeout)


@pytest.mark.anyio
async def test_decoding_client_refused() -> None:
    # Records are bytes: a client that decodes replies would corrupt them.
    client = Redis(decode_responses=True)
    try:
        with pytest.raises(ImproperlyConfigured, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()
    with pytest.raises(ImproperlyConfigured, match="decode_responses"):
        RedisStore("redis://127.0.0.1:6379/0?decode_responses=true")


def _connected_clients(server: RedisServer) -> int:
    """Clients connected to ``server``, not counting the redis-cli asking."""
    match = re.search(r"connected_clients:(\d+)", server.info("clients"))
    assert match is not None
    return int(match.group(1)) - 1


def _wait_connected(server: RedisServer, expected: int) -> None:
    deadline = time.monotonic() + 5
    while _connected_clients(server) != expected:
        assert time.monotonic() < deadline, f"expected {expected} connected clients"
        time.sleep(0.02)


@pytest.mark.anyio
async def test_close_closes_only_the_clients_the_store_owns(private_redis: RedisServer) -> None:
    key = new_key()

    built = RedisStore(private_redis.url)  # from a URL: the store owns the client
    await built.read(key)
    _wait_connected(private_redis, 1)
    await built.close()
    _wait_connected(private_redis, 0)

    client = Redis.from_url(private_redis.url)
    borrowed = RedisStore(client)  # passed in: the caller owns it
    await borrowed.read(key)
    await borrowed.close()
    await anyio.sleep(0.1)
    _wait_connected(private_redis, 1)
    assert await client.ping()
    await client.aclose()
    _wait_connected(private_redis, 0)

    handed_over = RedisStore(Redis.from_url(private_redis.url), owns_client=True)
    await handed_over.read(key)
    _wait_connected(private_redis, 1)
    await handed_over.close()
    _wait_connected(private_redis, 0)


@pytest.mark.anyio
async def test_unix_socket_url(tmp_path: Path) -> None:
    require_redis_binaries()
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(
        tmp_path / "unix", None, "--unixsocket", str(socket_path), "--unixsocketperm", "700"
    )
    server.start()
    try:
        store = RedisStore(f"unix://{socket_path}?db=0")
        key = new_key()
        assert await store.create(key, b"a", 60)
        assert await store.append(key, b"b", 60)
        assert await store.read(key) == b"ab"
        await store.close()
    finally:
        server.stop()


def test_store_from_url(redis_url: str) -> None:
    from asgi_sessions.stores import store_from_url

    store = store_from_url(redis_url)
    assert isinstance(store, RedisStore)


# -- round trips, counted on the connection and by the server --------------------------


class CountingConnection(Connection):
    """Counts what it sends: one packed command is one round trip."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


def _command_counts(server: RedisServer) -> dict[str, int]:
    counts = {}
    for line in server.info("commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            counts[name.removeprefix("cmdstat_")] = int(rest.split(",")[0].split("=")[1])
    return counts


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


class _Meter:
    """Round trips sent and commands the server ran, during one operation."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    async def measure(self, operation: Operation) -> tuple[int, dict[str, int]]:
        sent = CountingConnection.sent
        before = _command_counts(self.server)
        await operation()
        delta = _delta(before, _command_counts(self.server))
        delta.pop("info", None)
        return CountingConnection.sent - sent, delta


def _counting_store(server: RedisServer) -> RedisStore:
    pool = ConnectionPool.from_url(server.url, connection_class=CountingConnection)
    return RedisStore(Redis(connection_pool=pool), owns_client=True)


@pytest.mark.anyio
async def test_each_operation_is_one_round_trip(private_redis: RedisServer) -> None:
    store = _counting_store(private_redis)
    key = new_key()
    # Connect, and have the server cache the three scripts (a miss costs an EVAL, once).
    await store.compact_and_append(key, b"", b"", b"", 60)
    await store.append(key, b"", 60)
    await store.replace(key, b"", b"", 60)
    # commandstats also counts what a script runs inside Redis; the round trip
    # is the one EVALSHA.
    expected: dict[str, tuple[Operation, dict[str, int]]] = {
        "create": (lambda: store.create(key, b"a", 60), {"set": 1}),
        "read": (lambda: store.read(key), {"get": 1}),
        "update": (lambda: store.update(key, b"b", 60), {"set": 1}),
        "append": (
            lambda: store.append(key, b"c", 60),
            {"evalsha": 1, "exists": 1, "append": 1, "expire": 1},
        ),
        "replace": (
            lambda: store.replace(key, b"bc", b"d", 60),
            {"evalsha": 1, "get": 1, "set": 1},
        ),
        "compact_and_append": (
            lambda: store.compact_and_append(key, b"d", b"e", b"f", 60),
            {"evalsha": 1, "get": 1, "set": 1},
        ),
        "touch": (lambda: store.touch(key, 60), {"expire": 1}),
        "delete": (lambda: store.delete(key), {"del": 1}),
    }
    meter = _Meter(private_redis)
    for name, (operation, commands) in expected.items():
        if name == "delete":
            assert await store.read(key) == b"ef"
        assert await meter.measure(operation) == (1, commands), name
    assert await store.clear_expired() == 0
    await store.close()


@pytest.mark.anyio
async def test_scripts_survive_a_script_flush(private_redis: RedisServer) -> None:
    store = _counting_store(private_redis)
    key = new_key()
    assert await store.create(key, b"a", 60)
    cli(private_redis.port, "SCRIPT", "FLUSH")  # as after a restart or failover
    meter = _Meter(private_redis)
    trips, commands = await meter.measure(lambda: store.append(key, b"b", 60))
    assert trips == 2
    assert commands["evalsha"] == 1  # NOSCRIPT
    assert commands["eval"] == 1
    assert await meter.measure(lambda: store.append(key, b"c", 60)) == (
        1,
        {"evalsha": 1, "exists": 1, "append": 1, "expire": 1},
    )
    assert await store.read(key) == b"abc"
    await store.close()


# -- cluster -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cluster_scripts_work_on_every_node(redis_cluster: RedisClusterNodes) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    await client.initialize()
    store = RedisStore(client, prefix=_prefix())
    for port in redis_cluster.ports:
        cli(port, "SCRIPT", "FLUSH")  # so each node also takes the EVAL fallback
    by_port = _keys_on_every_node(client, store.prefix, per_node=3)
    assert sorted(by_port) == sorted(redis_cluster.ports)
    for key in [key for keys in by_port.values() for key in keys]:
        assert await store.create(key, b"a", 60)
        assert await store.append(key, b"b", 60)
        assert await store.replace(key, b"ab", b"c", 60)
        assert await store.compact_and_append(key, b"c", b"d", b"e", 60)
        assert await store.read(key) == b"de"
        await store.delete(key)
    await client.aclose()


@pytest.mark.anyio
async def test_cluster_clear_expired_prunes_user_sets_on_every_node(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    await client.initialize()
    store = RedisStore(client, prefix=_prefix())
    by_port = _keys_on_every_node(client, store.prefix + "user:", per_node=2)
    users = [user for found in by_port.values() for user in found]
    live: dict[str, str] = {}
    for user in users:
        live[user], gone = new_key(), new_key()
        for key in (live[user], gone):
            assert await store.create(key, b"x", 60)
            await store.link_user(user, key)
        await store.delete(gone)
    assert await store.clear_expired() == 0
    for user in users:
        links = await client.smembers(store.prefix + "user:" + user)
        assert links == {live[user].encode()}, "a user set was not pruned"
    await client.aclose()


@pytest.mark.anyio
async def test_cluster_outage_and_recovery(redis_cluster: RedisClusterNodes) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    await client.initialize()
    store = RedisStore(client, prefix=_prefix(), timeout=0.5)
    by_port = {port: keys[0] for port, keys in _keys_on_every_node(client, store.prefix, 1).items()}
    keys = list(by_port.values())
    for key in keys:
        assert await store.create(key, b"kept", 60)
    try:
        # One master down: its keys are unavailable, the others still answer.
        down = redis_cluster.nodes[1]
        down.stop()
        await _assert_unavailable(lambda: store.read(by_port[down.port]), by_port[down.port])
        alive = by_port[redis_cluster.ports[0]]
        assert await store.read(alive) == b"kept"
        # All down: the cluster client cannot even map slots.
        redis_cluster.stop()
        for operation in _all_operations(store, keys[0]).values():
            await _assert_unavailable(operation, keys[0])
    finally:
        redis_cluster.start()
    # The same store object works again once the cluster is back (empty:
    # these nodes persist nothing).
    key = new_key()
    assert await store.create(key, b"back", 60)
    assert await store.read(key) == b"back"
    await client.aclose()


# -- sentinel ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sentinel_outage_and_recovery(redis_sentinel: RedisSentinel) -> None:
    client = _sentinel_client(redis_sentinel)
    store = RedisStore(client, prefix=_prefix(), timeout=0.25)
    key = new_key()
    assert await store.create(key, b"a", 60)
    try:
        redis_sentinel.master.stop()
        await _assert_unavailable(lambda: store.read(key), key)
        redis_sentinel.stop_sentinel()  # no master to discover either
        for operation in _all_operations(store, key).values():
            await _assert_unavailable(operation, key)
    finally:
        redis_sentinel.start()
    assert await store.create(key, b"b", 60)
    assert await store.read(key) == b"b"
    await store.delete(key)
    await client.aclose()


# -- faults ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_down_redis_raises_unavailable_quickly_and_recovers(
    private_redis: RedisServer,
) -> None:
    store = RedisStore(private_redis.url, timeout=0.5)
    key = new_key()
    assert await store.create(key, b"kept", 600)
    private_redis.stop()
    for operation in _all_operations(store, key).values():
        await _assert_unavailable(operation, key)
    private_redis.start()
    assert await store.read(key) == b"kept"  # nothing lost, same store object
    assert await store.append(key, b"+more", 600)
    assert await store.read(key) == b"kept+more"
    await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("client_timeouts", [True, False], ids=["url", "client-without-timeouts"])
async def test_hung_redis_times_out_and_no_reply_crosses_over(
    private_redis: RedisServer, client_timeouts: bool
) -> None:
    # A hung server accepts connections and never answers: only a timeout
    # saves the request. A passed-in client may have no socket timeout at
    # all; the store's own bound still applies.
    if client_timeouts:
        store = RedisStore(private_redis.url, timeout=0.25)
    else:
        store = RedisStore(Redis.from_url(private_redis.url), timeout=0.25, owns_client=True)
    first, second = new_key(), new_key()
    assert await store.create(first, b"first", 60)
    assert await store.create(second, b"second", 60)
    assert private_redis.process is not None
    pid = private_redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for operation in _all_operations(store, first).values():
            await _assert_unavailable(operation, first, within=1.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    # A late reply to a timed-out command must never be read as the answer
    # to the next one.
    assert await store.read(second) == b"second"
    assert await store.create(second, b"other", 60) is False
    assert await store.read(second) == b"second"
    await store.close()


@pytest.fixture
def snapshotting_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, without AOF, for :func:`_refuse_writes`."""
    require_redis_binaries()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _refuse_writes(server: RedisServer) -> None:
    """Make ``server`` refuse every write with ``MISCONF``, as when its disk is full.

    A directory where the snapshot goes makes the ``BGSAVE`` fail (made after
    the start: Redis does not start on it); with a save point configured,
    ``stop-writes-on-bgsave-error`` (the default) then refuses writes.
    """
    (server.directory / "dump.rdb").mkdir()
    cli(server.port, "CONFIG", "SET", "save", "3600 1")
    cli(server.port, "BGSAVE")
    deadline = time.monotonic() + 10
    while "rdb_last_bgsave_status:err" not in server.info("persistence"):
        assert time.monotonic() < deadline, "the BGSAVE did not fail"
        time.sleep(0.05)


@pytest.mark.anyio
async def test_redis_that_cannot_persist_is_unavailable_for_writes(
    snapshotting_redis: RedisServer,
) -> None:
    store = RedisStore(snapshotting_redis.url)
    key, user = new_key(), new_key()
    assert await store.create(key, b"kept", 600)
    await store.link_user(user, key)
    _refuse_writes(snapshotting_redis)
    # Each kind of write: plain commands, Lua scripts (EVALSHA) and a pipeline.
    writes: dict[str, Operation] = {
        "create": lambda: store.create(new_key(), b"x", 60),
        "update": lambda: store.update(key, b"x", 60),
        "append": lambda: store.append(key, b"x", 60),
        "replace": lambda: store.replace(key, b"kept", b"new", 60),
        "compact_and_append": lambda: store.compact_and_append(key, b"x", b"y", b"z", 60),
        "touch": lambda: store.touch(key, 60),
        "delete": lambda: store.delete(key),
        "take": lambda: store.take(key),
        "link_user": lambda: store.link_user(user, new_key()),
        "delete_user": lambda: store.delete_user(user),  # DEL and SREM in one pipeline
    }
    for name, operation in writes.items():
        try:
            await operation()
        except SessionStoreUnavailable as error:
            message = str(error)
        else:
            pytest.fail(f"{name} did not raise SessionStoreUnavailable")
        assert "cannot persist to disk (MISCONF)" in message, name
        assert key not in message, name
        assert user not in message, name
    # Reads still work, the record is intact.
    assert await store.read(key) == b"kept"
    assert await store.read_with_ttl(key) is not None
    assert await store.clear_expired() == 0  # SCAN, SMEMBERS and EXISTS: reads only
    await store.close()


def _app(store: RedisStore) -> Starlette:
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
    app = _app(store)
    # One client (one event loop for the Redis connections), two users' cookies.
    with TestClient(app) as client:
        assert client.get("/login/alice").status_code == 200
        alice = client.cookies["session"]
        client.cookies.clear()
        assert client.get("/login/bob").status_code == 200
        bob = client.cookies["session"]

        private_redis.stop()
        client.cookies.clear()  # one session cookie, as a browser would hold
        client.cookies.set("session", alice)
        started = time.monotonic()
        assert client.get("/whoami").status_code == 503
        assert time.monotonic() - started < 3
        assert client.get("/login/mallory").status_code == 503  # load failed: nothing written
        assert client.get("/health").text == "alive"  # autoload failed; route never touched it

        private_redis.start()
        assert client.get("/whoami").json() == {"user": "alice"}
        client.cookies.clear()
        client.cookies.set("session", bob)
        assert client.get("/whoami").json() == {"user": "bob"}


def test_redis_that_cannot_persist_through_the_middleware(snapshotting_redis: RedisServer) -> None:
    store = RedisStore(snapshotting_redis.url)
    with TestClient(_app(store)) as client:
        assert client.get("/login/alice").status_code == 200
        _refuse_writes(snapshotting_redis)
        assert client.get("/whoami").json() == {"user": "alice"}  # a read is still served
        assert client.get("/login/bob").status_code == 503  # a 503, not a 500


@pytest.mark.parametrize(
    ("settings", "reads"),
    [
        # After a failover the app may still talk to the old primary, now a
        # read-only replica (of port 1: a primary that never answers, so the
        # old data stays served): writes get READONLY.
        ([("REPLICAOF", "127.0.0.1", "1")], True),
        # replica-serve-stale-data no: a replica whose primary is gone answers
        # every read with MASTERDOWN too (a plain ResponseError in redis-py 5).
        (
            [
                ("CONFIG", "SET", "replica-serve-stale-data", "no"),
                ("REPLICAOF", "127.0.0.1", "1"),
            ],
            False,
        ),
        # min-replicas-to-write: with too few replicas connected, writes get
        # NOREPLICAS until they are back.
        ([("CONFIG", "SET", "min-replicas-to-write", "1")], True),
    ],
    ids=["demoted-to-replica", "replica-cut-off", "too-few-replicas"],
)
def test_a_redis_refusing_for_now_is_unavailable(
    snapshotting_redis: RedisServer, settings: list[tuple[str, ...]], reads: bool
) -> None:
    # Each refusal is an outage (503), never a 500; reads go on where Redis serves them.
    store = RedisStore(snapshotting_redis.url)
    with TestClient(_app(store)) as client:
        assert client.get("/login/alice").status_code == 200
        for command in settings:
            cli(snapshotting_redis.port, *command)
        if reads:
            assert client.get("/whoami").json() == {"user": "alice"}
            assert client.get("/login/bob").status_code == 503
        else:
            assert client.get("/whoami").status_code == 503


def test_a_redis_busy_with_a_long_script_is_unavailable(
    snapshotting_redis: RedisServer,
) -> None:
    # Another client's script that runs past busy-reply-threshold: Redis
    # answers everyone else BUSY until it ends or is killed.
    store = RedisStore(snapshotting_redis.url, timeout=5)
    with TestClient(_app(store)) as client:
        assert client.get("/login/alice").status_code == 200
        cli(snapshotting_redis.port, "CONFIG", "SET", "busy-reply-threshold", "50")
        assert REDIS_CLI is not None
        looping = subprocess.Popen(
            [REDIS_CLI, "-p", str(snapshotting_redis.port), "EVAL", "while true do end", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)  # past the threshold
            assert client.get("/whoami").status_code == 503
            assert client.get("/login/bob").status_code == 503
        finally:
            cli(snapshotting_redis.port, "SCRIPT", "KILL")
            looping.wait(timeout=10)
        assert client.get("/whoami").json() == {"user": "alice"}


# -- what the store holds --------------------------------------------------------------


def _scan(server: RedisServer) -> list[str]:
    return cli(server.port, "--scan").split()


def test_keys_hold_no_session_id(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, prefix="session:")
    with TestClient(_app(store)) as client:
        client.get("/login/alice")
        session_id = client.cookies["session"]
    keys = _scan(private_redis)
    assert keys == ["session:" + hashlib.sha256(session_id.encode()).hexdigest()]
    value = cli(private_redis.port, "GET", keys[0])
    assert session_id not in value


@pytest.mark.anyio
async def test_only_prefixed_hex_keys_are_written(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, prefix="app1:s:")
    keys = [new_key() for _ in range(5)]
    for key in keys:
        assert await store.create(key, b"a", 60)
        assert await store.append(key, b"b", 60)
        assert await store.replace(key, b"a", b"c", 60)
        assert await store.compact_and_append(key, b"c", b"d", b"e", 60)
        assert await store.update(key, b"f", 60)
        await store.touch(key, 60)
    await store.close()
    stored = _scan(private_redis)
    assert sorted(stored) == sorted("app1:s:" + key for key in keys)
    assert all(re.fullmatch(r"app1:s:[0-9a-f]{64}", key) for key in stored)


@pytest.mark.anyio
async def test_clear_expired_is_bounded_per_scan_page_not_in_all(
    private_redis: RedisServer,
) -> None:
    """A big keyspace: the SCAN takes many times ``timeout``, and clear_expired still works."""
    store = RedisStore(private_redis.url, prefix="app:", timeout=0.03)
    user, live, gone = new_key(), new_key(), new_key()
    for key in (live, gone):
        assert await store.create(key, b"x", 60)
        await store.link_user(user, key)
    await store.delete(gone)
    # 200,000 keys of another app that the SCAN for "app:user:*" walks past:
    # ~200 pages of about half a millisecond each, so the walk takes >0.1 s.
    fill = "for i = 1, 200000 do redis.call('SET', 'cache:' .. i, 'x') end"
    admin = Redis.from_url(private_redis.url)  # no 0.03 s socket timeout
    await admin.eval(fill, 0)
    assert await store.clear_expired() == 0
    links = await admin.smembers("app:user:" + user)
    assert links == {live.encode()}, "the link to the deleted record was not pruned"
    await admin.aclose()
    await store.close()
