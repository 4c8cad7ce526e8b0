"""Redis fixtures for the store tests: the shared local server and throwaway ones.

``redis_url`` is the Redis every developer runs (ASGI_SESSIONS_REDIS_URL);
tests using it must namespace their keys and delete them, never flush.
``private_redis``, ``redis_cluster`` and ``redis_sentinel`` start redis-server
processes of their own, for tests that count commands, kill servers or need a
topology. Missing services or binaries skip the test, or fail it when CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_fixtures import RedisClusterNodes, RedisSentinel
from .redis_servers import RedisServer, require_redis_binaries


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis (ASGI_SESSIONS_REDIS_URL), checked reachable once."""
    # Imported here so the other stores' tests run without the redis extra.
    import redis

    url = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis at ASGI_SESSIONS_REDIS_URL not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        client.close()
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone: its counters and outages are its own.

    It persists every write (AOF, fsync always), like a production Redis
    should, so a restart loses nothing.
    """
    require_redis_binaries()
    server = RedisServer(tmp_path / "redis", None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A 3-master Redis Cluster, shared by a test module."""
    require_redis_binaries()
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A master watched by one Sentinel, shared by a test module."""
    require_redis_binaries()
    sentinel = RedisSentinel(tmp_path_factory.mktemp("sentinel"))
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()
