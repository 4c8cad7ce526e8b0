"""The Redis example against a real Redis.

Redis comes from ``ASGI_SESSIONS_REDIS_URL`` (default 127.0.0.1:6379/0); if it
is not reachable the tests skip with the reason, or fail under CI=true. Each
test uses a key prefix of its own and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.testclient import TestClient

from asgi_sessions.stores import RedisStore, StoreKey
from examples.redis_store.app import create_app
from tests.backends import REDIS_URL, unavailable


class CountingRedisStore(RedisStore):
    """The real store, counting the reads the app makes."""

    reads = 0

    async def read(self, key: StoreKey) -> bytes | None:
        self.reads += 1
        return await super().read(key)


async def raw_value(client: Any, key: bytes) -> bytes:
    """Everything a key holds, as bytes: records are strings, an index may be a set."""
    kind = (await client.type(key)).decode()
    if kind == "string":
        return bytes(await client.get(key))
    if kind == "set":
        return b"\n".join(sorted(await client.smembers(key)))
    if kind == "hash":
        return b"\n".join(k + b"=" + v for k, v in (await client.hgetall(key)).items())
    if kind == "list":
        return b"\n".join(await client.lrange(key, 0, -1))
    if kind == "zset":
        return b"\n".join(await client.zrange(key, 0, -1))
    raise AssertionError(f"unexpected Redis type {kind} for {key!r}")


def redis_dump(prefix: str, delete: bool = False) -> dict[str, bytes]:
    """Every key under ``prefix`` with its contents (and optionally delete them)."""

    async def run() -> dict[str, bytes]:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
            values = [await raw_value(client, key) for key in keys]
            if delete and keys:
                await client.delete(*keys)
            return {k.decode(): v for k, v in zip(keys, values, strict=True)}
        finally:
            await client.aclose()

    return asyncio.run(run())


def hashed(prefix: str, cookie: str) -> str:
    """The Redis key of the session behind ``cookie``: the SHA-256 of the id."""
    return prefix + hashlib.sha256(cookie.encode()).hexdigest()


FORWARD = re.compile(rb"[0-9a-f]{64}(?:\n[0-9a-f]{64})*")
"""A login's forward record: for a minute the old key names the new one
(64 hex digits), so a logout that raced the login can follow it."""


def session_keys(prefix: str) -> list[str]:
    """Session records only (the store may keep other keys: a per-user index, forward records)."""
    return [
        key
        for key, value in redis_dump(prefix).items()
        if re.fullmatch("[0-9a-f]{64}", key[len(prefix) :]) and not FORWARD.fullmatch(value)
    ]


@pytest.fixture
def prefix() -> Iterator[str]:
    try:
        redis_dump("probe-nothing-here:")
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL} not reachable: {exc}")
    prefix = f"example:{secrets.token_hex(4)}:session:"
    try:
        yield prefix
    finally:
        redis_dump(prefix, delete=True)


def test_recently_viewed_login_and_logout(prefix: str) -> None:
    store = CountingRedisStore(REDIS_URL, prefix=prefix)
    with TestClient(create_app(store)) as client:
        assert client.get("/recent").json() == {"recent": []}
        for sku in ["kettle", "mug", "kettle", "tea"]:
            assert client.get(f"/products/{sku}").status_code == 200
        assert client.get("/recent").json() == {"recent": ["mug", "kettle", "tea"]}
        assert client.get("/products/teapot").status_code == 404

        # Only hashed ids in Redis, under our prefix: no key (and no value)
        # contains the cookie, so `KEYS *` or a dump hands out no session.
        anonymous = client.cookies["session"]
        assert session_keys(prefix) == [hashed(prefix, anonymous)]
        everything = redis_dump(prefix)
        assert not any(anonymous in key for key in everything)
        assert not any(anonymous.encode() in value for value in everything.values())

        # Login cycles the id: the old key is gone, the recent list survives.
        assert client.post("/login", data={"username": "alice"}).json() == {"user": "alice"}
        cookie = client.cookies["session"]
        assert cookie != anonymous
        assert session_keys(prefix) == [hashed(prefix, cookie)]
        everything = redis_dump(prefix)
        for secret in (cookie, anonymous):
            assert not any(secret in key for key in everything)
            assert not any(secret.encode() in value for value in everything.values())
        assert not any("alice" in key for key in everything)  # nor the user id, in a key
        assert client.get("/me").json() == {"user": "alice"}
        assert client.get("/recent").json() == {"recent": ["mug", "kettle", "tea"]}

        # autoload=False: a page that never touches the session reads nothing,
        # though the request carries the cookie.
        before = store.reads
        assert client.get("/").status_code == 200
        assert store.reads == before
        client.get("/me")
        assert store.reads == before + 1

        response = client.post("/logout")
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
        assert session_keys(prefix) == []
        assert client.get("/me").json() == {"user": None}


def test_a_stale_cookie_does_not_reach_another_session(prefix: str) -> None:
    with TestClient(create_app(RedisStore(REDIS_URL, prefix=prefix))) as client:
        client.get("/products/mug")
        old = client.cookies["session"]
        client.post("/login", data={"username": "alice"})
        # Someone replays the pre-login cookie: it is a fresh, empty session.
        client.cookies.clear()
        client.cookies["session"] = old
        assert client.get("/me").json() == {"user": None}
        assert client.get("/recent").json() == {"recent": []}


def test_redis_down_is_a_503_only_where_the_session_is_used() -> None:
    # Nothing listens on port 1: every connection is refused at once.
    store = RedisStore("redis://127.0.0.1:1/0", prefix="unused:", timeout=0.5)
    with TestClient(create_app(store)) as client:
        assert client.get("/").status_code == 200  # no session, no Redis

        # A returning visitor: loading fails, the app's handler answers.
        client.cookies["session"] = secrets.token_urlsafe(32)
        response = client.get("/recent")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "set-cookie" not in response.headers  # a failed load is never followed by a write


def ttls(prefix: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            return {k.decode(): await client.ttl(k) async for k in client.scan_iter(prefix + "*")}
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_clear_expired_leaves_nothing_without_an_expiry(prefix: str) -> None:
    """The user index (for "log out everywhere") is the only thing kept without a TTL:
    a session kept alive by idle refreshes must stay findable. Links to ended
    sessions go when `clear-expired` runs (and, for busy users, on their next login)."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    with TestClient(create_app(store)) as client:
        client.post("/login", data={"username": "alice"})
        client.post("/logout")
    assert asyncio.run(_clear_expired(prefix)) == 0  # Redis expires the records itself
    assert {key: ttl for key, ttl in ttls(prefix).items() if ttl < 0} == {}


async def _clear_expired(prefix: str) -> int:
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        return await store.clear_expired()
    finally:
        await store.close()


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"origin": "null"}],
    ids=["origin", "sec-fetch-site", "null-origin"],
)
def test_cross_site_logins_and_logouts_are_refused(prefix: str, headers: dict[str, str]) -> None:
    with TestClient(create_app(RedisStore(REDIS_URL, prefix=prefix))) as client:
        # Login CSRF: another site posts its own username; no session comes back.
        response = client.post("/login", data={"username": "mallory"}, headers=headers)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert "session" not in client.cookies
        assert session_keys(prefix) == []

        client.post("/login", data={"username": "alice"})
        response = client.post("/logout", headers=headers)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert client.get("/me").json() == {"user": "alice"}


def test_same_origin_logins_are_accepted(prefix: str) -> None:
    browser = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    with TestClient(create_app(RedisStore(REDIS_URL, prefix=prefix))) as client:
        response = client.post("/login", data={"username": "alice"}, headers=browser)
        assert response.json() == {"user": "alice"}
        assert client.get("/me").json() == {"user": "alice"}
        assert client.post("/logout", headers=browser).json() == {"user": None}
        assert session_keys(prefix) == []
