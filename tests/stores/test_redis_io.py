"""DESIGN §3 on Redis: round trips per request, counted twice.

Once on the connection (every packed command sent is one round trip) and once
by the server (``INFO commandstats`` of a redis-server this module starts,
so nothing else pollutes the counts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.stores import RedisStore

from .redis_servers import RedisServer, require_redis_binaries
from .test_redis import _command_counts, _delta

# commandstats also counts what a Lua script runs inside Redis: a write's
# one round trip is the EVALSHA of the fold-and-append script, whose GET and
# SET run inside the server.
WRITE_SCRIPT = {"evalsha": 1, "get": 1, "set": 1}


class CountingConnection(Connection):
    round_trips = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis_binaries()
    redis_server = RedisServer(tmp_path_factory.mktemp("io") / "redis")
    redis_server.start()
    try:
        yield redis_server
    finally:
        redis_server.stop()


def make_app(server: RedisServer, **options: Any) -> Starlette:
    pool = ConnectionPool.from_url(server.url, connection_class=CountingConnection)
    store = RedisStore(Redis(connection_pool=pool), owns_client=True)

    async def untouched(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        return PlainTextResponse(str(await session_of(request).aget("user")))

    async def write(request: Request) -> Response:
        session = session_of(request)
        await session.aset("counter", (await session.aget("counter", 0)) + 1)
        return PlainTextResponse("ok")

    async def login(request: Request) -> Response:
        await session_of(request).aset("user", "alice")
        return PlainTextResponse("ok")

    async def logout(request: Request) -> Response:
        session_of(request).flush()
        return PlainTextResponse("bye")

    return Starlette(
        routes=[
            Route("/untouched", untouched),
            Route("/read", read),
            Route("/write", write),
            Route("/login", login),
            Route("/logout", logout),
        ],
        middleware=[Middleware(SessionMiddleware, store=store, autoload=False, **options)],
    )


class Meter:
    def __init__(self, server: RedisServer) -> None:
        self.server = server

    def __enter__(self) -> Meter:
        self.before_trips = CountingConnection.round_trips
        self.before_stats = _command_counts(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.trips = CountingConnection.round_trips - self.before_trips
        delta = _delta(self.before_stats, _command_counts(self.server))
        delta.pop("info", None)
        self.commands = delta


@pytest.mark.parametrize(
    ("path", "trips", "commands"),
    [
        ("/untouched", 0, {}),
        ("/read", 1, {"get": 1}),
        ("/write", 2, {**WRITE_SCRIPT, "get": 2}),  # the load's GET and the script's
        ("/logout", 1, {"evalsha": 1, "get": 1, "del": 1}),  # take: what ended, in one script
    ],
)
def test_round_trips_per_request(
    server: RedisServer, path: str, trips: int, commands: dict[str, int]
) -> None:
    with TestClient(make_app(server)) as client:
        client.get("/login")
        client.get("/logout")
        client.get("/login")
        client.get("/write")
        client.get("/write")  # every script is now cached on the server: EVALSHA hits
        with Meter(server) as meter:
            assert client.get(path).status_code == 200
    assert meter.trips == trips
    assert meter.commands == commands


def test_idle_refresh_is_one_touch_and_no_rewrite(server: RedisServer) -> None:
    with TestClient(make_app(server, idle_timeout=600)) as client:
        client.get("/login")
        with Meter(server) as meter:
            assert client.get("/read").text == "alice"
    assert meter.trips == 2  # the read, and one EXPIRE
    assert meter.commands == {"get": 1, "expire": 1}
