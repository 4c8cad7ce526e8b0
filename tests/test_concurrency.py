"""Concurrent requests on one session, through the real middleware, on every built-in store.

DESIGN §6: requests that change different keys all persist (commit appends
only what changed, and the store applies appends atomically); a logout that
lands while other requests are in flight is never undone (they get 400,
``SessionInterrupted``); sessions created concurrently never share an id.
Requests truly overlap: they run as tasks on one event loop against the raw
ASGI app, and each waits at a barrier after loading the session.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from asgi_sessions import SessionMiddleware, session_of
from asgi_sessions.stores import SessionStore
from tests.apps import in_background
from tests.backends import ASYNCIO_ONLY, STORES, store_factory

pytestmark = pytest.mark.anyio


_RUNS = [(name, "asyncio") for name in STORES] + [
    (name, "trio") for name in STORES if name not in ASYNCIO_ONLY
]
"""Every store on asyncio, and the anyio-neutral ones (memory, file) on trio too."""


@pytest.fixture(params=_RUNS, ids=[f"{name}-{backend}" for name, backend in _RUNS])
def _run(request: pytest.FixtureRequest) -> tuple[str, str]:
    name, backend = request.param
    return name, backend


@pytest.fixture
def store_name(_run: tuple[str, str]) -> str:
    return _run[0]


@pytest.fixture
def anyio_backend(_run: tuple[str, str]) -> str:
    return _run[1]


class Barrier:
    """Releases everyone once ``parties`` requests have loaded their session."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = anyio.Event()
        self.all_but_one = anyio.Event()  # for a test that is the last party itself

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties - 1:
            self.all_but_one.set()
        if self.arrived >= self.parties:
            self.event.set()
        with anyio.fail_after(10):
            await self.event.wait()


def make_app(store: SessionStore, state: dict[str, Any]) -> Starlette:
    async def seed(request: Request) -> Response:
        request.session["owner"] = "alice"
        return PlainTextResponse("ok")

    async def set_own_key(request: Request) -> Response:
        session = request.session
        assert session["owner"] == "alice"  # loaded before everyone proceeds
        await state["barrier"].wait()
        session[f"k{request.path_params['n']}"] = int(request.path_params["n"])
        return PlainTextResponse("ok")

    async def slow_write(request: Request) -> Response:
        session = request.session
        assert session["owner"] == "alice"
        state["loaded"].set()
        with anyio.fail_after(10):
            await state["logged_out"].wait()
        session["cart"] = ["resurrected?"]
        return PlainTextResponse("ok")

    async def slow_save(request: Request) -> Response:
        # An early save (before slow work) that finds the session logged out.
        session = session_of(request)
        assert session["owner"] == "alice"
        state["loaded"].set()
        with anyio.fail_after(10):
            await state["logged_out"].wait()
        session["progress"] = 1
        await session.save()
        session["progress"] = 2
        return PlainTextResponse("ok")

    async def slow_nested(request: Request) -> Response:
        # A change in place to a nested value, then mark_modified().
        session = request.session
        assert session["owner"] == "alice"
        state["nested_loaded"].set()
        with anyio.fail_after(10):
            await state["nested_go"].wait()
        session["cart"].append("apple")
        session_of(request).mark_modified()
        return PlainTextResponse("ok")

    async def seed_cart(request: Request) -> Response:
        request.session["cart"] = []
        request.session["k0"] = -1
        return PlainTextResponse("ok")

    async def forget_owner(request: Request) -> Response:
        # Deletes the only key: the session is emptied key by key, not logged out.
        session = request.session
        assert session["owner"] == "alice"
        state["forget_loaded"].set()
        with anyio.fail_after(10):
            await state["forget_go"].wait()
        del session["owner"]
        return PlainTextResponse("ok")

    async def forget_missing(request: Request) -> Response:
        # Deletes a key it does not hold, as `try: del s[k] except KeyError` does.
        session = request.session
        assert session["owner"] == "alice"
        state["forget_loaded"].set()
        with anyio.fail_after(10):
            await state["forget_go"].wait()
        with contextlib.suppress(KeyError):
            del session["k0"]
        return PlainTextResponse("ok")

    async def slow_login(request: Request) -> Response:
        session = session_of(request)
        assert session["owner"] == "alice"
        state["login_loaded"].set()
        with anyio.fail_after(10):
            await state["login_go"].wait()
        session.cycle_key()
        session["user"] = "alice"
        return PlainTextResponse("ok")

    async def claim(request: Request) -> Response:
        request.session["user"] = "mallory"
        return PlainTextResponse("ok")

    async def logout(request: Request) -> Response:
        session_of(request).flush()
        return PlainTextResponse("bye")

    async def clear(request: Request) -> Response:
        request.session.clear()  # a logout as Starlette apps write it
        return PlainTextResponse("bye")

    async def clear_with_flash(request: Request) -> Response:
        session = request.session
        session.clear()
        session["flash"] = "You are logged out."
        return PlainTextResponse("bye")

    async def slow_clear_with_flash(request: Request) -> Response:
        session = request.session
        assert session["owner"] == "alice"
        state["clear_loaded"].set()
        with anyio.fail_after(10):
            await state["clear_go"].wait()
        return await clear_with_flash(request)

    async def view(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    async def new(request: Request) -> Response:
        request.session["n"] = request.path_params["n"]
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/seed", seed),
            Route("/set/{n}", set_own_key),
            Route("/slow", slow_write),
            Route("/slow-save", slow_save),
            Route("/slow-nested", slow_nested),
            Route("/seed-cart", seed_cart),
            Route("/forget", forget_owner),
            Route("/forget-missing", forget_missing),
            Route("/login", slow_login),
            Route("/claim", claim),
            Route("/logout", logout),
            Route("/clear", clear),
            Route("/clear-flash", clear_with_flash),
            Route("/slow-clear-flash", slow_clear_with_flash),
            Route("/view", view),
            Route("/new/{n}", new),
        ],
        middleware=[Middleware(SessionMiddleware, store=store)],
    )


async def call(app: Any, path: str, cookie: str | None = None) -> tuple[int, str | None, bytes]:
    headers = [(b"host", b"test")]
    if cookie is not None:
        headers.append((b"cookie", f"session={cookie}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    status, set_cookie, body = 0, None, b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, set_cookie, body
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                if name == b"set-cookie":
                    set_cookie = value.decode().split(";", 1)[0].split("=", 1)[1]
        else:
            body += message.get("body", b"")

    await app(scope, receive, send)
    return status, set_cookie, body


async def seeded(app: Any) -> str:
    status, cookie, _ = await call(app, "/seed")
    assert status == 200
    assert cookie is not None
    return cookie


async def _overtaken(
    app: Any, cookie: str, slow_path: str, loaded: anyio.Event, go: anyio.Event, other_path: str
) -> dict[str, int]:
    """Run ``slow_path`` until it sets ``loaded``, run ``other_path`` to the end, then ``go``.

    The statuses of both: the slow request is overtaken between its load and
    its commit by the other one.
    """
    results: dict[str, int] = {}

    async def slow() -> None:
        results["slow"], _, _ = await call(app, slow_path, cookie)

    async with anyio.create_task_group() as group:
        group.start_soon(slow)
        with anyio.fail_after(10):
            await loaded.wait()
        results["other"], _, _ = await call(app, other_path, cookie)
        go.set()
    return results


async def assert_empty(app: Any, *cookies: str) -> None:
    """Each cookie opens an empty session: logged out, or never logged in."""
    for cookie in cookies:
        _, _, body = await call(app, "/view", cookie)
        assert body == b"{}"


async def test_fifty_overlapping_requests_each_keep_their_key(
    store_name: str, tmp_path: Path
) -> None:
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {"barrier": Barrier(50)}
        app = make_app(store, state)
        cookie = await seeded(app)
        statuses: list[int] = []

        async def one(n: int) -> None:
            status, _, _ = await call(app, f"/set/{n}", cookie)
            statuses.append(status)

        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(one, n)
        assert statuses == [200] * 50
        _, _, body = await call(app, "/view", cookie)
        data = json.loads(body)
        assert data["owner"] == "alice"
        assert {k: v for k, v in data.items() if k != "owner"} == {f"k{n}": n for n in range(50)}


@pytest.mark.parametrize(
    "slow_path",
    [
        "/slow",
        # An early save() raises SessionInterrupted inside the view. Before,
        # nothing answered it there: a 500. It is an HTTPException(400) now,
        # which Starlette's exception handling answers.
        "/slow-save",
    ],
)
async def test_logout_in_flight_is_never_undone(
    store_name: str, tmp_path: Path, slow_path: str
) -> None:
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {"loaded": anyio.Event(), "logged_out": anyio.Event()}
        app = make_app(store, state)
        cookie = await seeded(app)
        results = await _overtaken(
            app, cookie, slow_path, state["loaded"], state["logged_out"], "/logout"
        )
        assert results == {"slow": 400, "other": 200}
        _, _, body = await call(app, "/view", cookie)
        assert body == b"{}"  # still logged out: nothing resurrected


async def test_mark_modified_keeps_a_parallel_requests_other_keys(
    store_name: str, tmp_path: Path
) -> None:
    # mark_modified() used to rewrite every key with the values this request
    # had loaded, undoing what a parallel request set meanwhile.
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {
            "nested_loaded": anyio.Event(),
            "nested_go": anyio.Event(),
            "barrier": Barrier(1),
        }
        app = make_app(store, state)
        cookie = await seeded(app)
        assert (await call(app, "/seed-cart", cookie))[0] == 200
        statuses = await _overtaken(
            app, cookie, "/slow-nested", state["nested_loaded"], state["nested_go"], "/set/0"
        )
        assert statuses == {"slow": 200, "other": 200}
        _, _, body = await call(app, "/view", cookie)
        assert json.loads(body) == {"owner": "alice", "cart": ["apple"], "k0": 0}


@pytest.mark.parametrize("order", ["others_first", "others_last"])
async def test_deleting_the_last_key_keeps_a_parallel_requests_keys(
    store_name: str, tmp_path: Path, order: str
) -> None:
    """Emptying a session key by key is a change like any other: it merges.

    Before, it deleted the record, so a parallel request that set another
    key lost it silently (it committed first) or got a 400 (it committed
    after). Only flush() and clear() end the record.
    """
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {"forget_loaded": anyio.Event(), "forget_go": anyio.Event()}
        app = make_app(store, state)
        cookie = await seeded(app)
        statuses: dict[str, int] = {}
        forgotten = anyio.Event()

        async def forget() -> None:
            statuses["forget"], _, _ = await call(app, "/forget", cookie)
            forgotten.set()

        async def one(n: int) -> None:
            statuses[f"set{n}"], _, _ = await call(app, f"/set/{n}", cookie)

        async def others() -> None:
            async with anyio.create_task_group() as group:
                for n in range(3):
                    group.start_soon(one, n)

        async with anyio.create_task_group() as group:
            group.start_soon(forget)
            with anyio.fail_after(10):
                await state["forget_loaded"].wait()
            if order == "others_first":
                state["barrier"] = Barrier(3)
                await others()  # they load and commit while /forget waits
                state["forget_go"].set()
            else:
                barrier = state["barrier"] = Barrier(4)  # the three, and this test
                group.start_soon(others)
                with anyio.fail_after(10):
                    await barrier.all_but_one.wait()  # all three loaded, owner still there
                    state["forget_go"].set()
                    await forgotten.wait()
                await barrier.wait()  # now they commit, after /forget
        assert statuses == {"forget": 200, "set0": 200, "set1": 200, "set2": 200}
        _, _, body = await call(app, "/view", cookie)
        assert json.loads(body) == {"k0": 0, "k1": 1, "k2": 2}


async def test_a_del_that_fails_removes_nothing_a_parallel_request_set(
    store_name: str, tmp_path: Path
) -> None:
    # The failed del marks the session modified (as Starlette's does), but
    # it used to record a removal of the key too, which deleted the key a
    # parallel request had set after this one loaded.
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {
            "forget_loaded": anyio.Event(),
            "forget_go": anyio.Event(),
            "barrier": Barrier(1),
        }
        app = make_app(store, state)
        cookie = await seeded(app)
        statuses = await _overtaken(
            app, cookie, "/forget-missing", state["forget_loaded"], state["forget_go"], "/set/0"
        )
        assert statuses == {"slow": 200, "other": 200}
        _, _, body = await call(app, "/view", cookie)
        assert json.loads(body) == {"owner": "alice", "k0": 0}


async def test_a_login_keeps_keys_set_by_parallel_requests(store_name: str, tmp_path: Path) -> None:
    """cycle_key() carries over what other requests wrote while it ran.

    Before, the new id got only what the login request had loaded, so keys
    that parallel requests set on the old id in the meantime were lost,
    though those requests got a 200. A key both wrote is the login's.
    """
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {
            "login_loaded": anyio.Event(),
            "login_go": anyio.Event(),
            "barrier": Barrier(1),
        }
        app = make_app(store, state)
        cookie = await seeded(app)
        results: dict[str, Any] = {}

        async with anyio.create_task_group() as group:
            in_background(group, results, "login", lambda: call(app, "/login", cookie))
            with anyio.fail_after(10):
                await state["login_loaded"].wait()
            for n in range(3):
                status, _, _ = await call(app, f"/set/{n}", cookie)
                assert status == 200
            status, _, _ = await call(app, "/claim", cookie)
            assert status == 200
            state["login_go"].set()
        status, new_cookie, _ = results["login"]
        assert status == 200
        assert new_cookie is not None
        assert new_cookie != cookie
        _, _, body = await call(app, "/view", new_cookie)
        assert json.loads(body) == {"owner": "alice", "user": "alice", "k0": 0, "k1": 1, "k2": 2}
        _, _, body = await call(app, "/view", cookie)
        assert body == b"{}"  # the old id is worthless


def _ready(*names: str) -> dict[str, Any]:
    """State for :func:`make_app` whose login and logout go at once."""
    state: dict[str, Any] = {name: anyio.Event() for name in names}
    for event in state.values():
        event.set()
    return state


@pytest.mark.parametrize("logout", ["/logout", "/clear", "/clear-flash"])
async def test_a_logout_landing_after_a_login_ends_the_new_id(
    store_name: str, tmp_path: Path, logout: str
) -> None:
    """A logout sent with the old id before the login's new cookie arrived.

    The login took the old record first, so the logout finds it gone: it
    follows the old id's forward record and ends the new session too.
    Before, the new id stayed logged in although the user had clicked
    "log out" (and got a 200 for it).
    """
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, _ready("login_loaded", "login_go"))
        cookie = await seeded(app)
        status, new_cookie, _ = await call(app, "/login", cookie)
        assert status == 200
        assert new_cookie is not None
        status, _, _ = await call(app, logout, cookie)  # the stale id
        assert status == 200
        await assert_empty(app, new_cookie, cookie)


async def test_a_write_landing_after_a_login_does_not_replace_its_cookie(
    store_name: str, tmp_path: Path
) -> None:
    """A request sent with the old id before the login's cookie arrived, which writes.

    It finds the old id gone. Before, it started a fresh anonymous session,
    whose cookie replaced the logged-in one in the browser: the user was
    logged out by a late XHR. It gets a 400 now, and no cookie; the login
    stands, and the old id still opens nothing.
    """
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, _ready("login_loaded", "login_go"))
        cookie = await seeded(app)
        status, new_cookie, _ = await call(app, "/login", cookie)
        assert status == 200
        assert new_cookie is not None
        status, set_cookie, _ = await call(app, "/claim", cookie)  # the stale id writes
        assert (status, set_cookie) == (400, None)
        _, _, body = await call(app, "/view", new_cookie)
        assert json.loads(body) == {"owner": "alice", "user": "alice"}
        await assert_empty(app, cookie)


async def test_a_clear_logout_loaded_before_a_login_ends_the_new_id(
    store_name: str, tmp_path: Path
) -> None:
    """A Starlette-style logout (clear, then a flash message) that a login overtook.

    It loaded the old record before the login took it, so its write finds
    the record gone (a 400, as for any overtaken request); it still ends
    the session the login moved to.
    """
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {"clear_loaded": anyio.Event(), "clear_go": anyio.Event()}
        state.update(_ready("login_loaded", "login_go"))
        app = make_app(store, state)
        cookie = await seeded(app)
        results: dict[str, Any] = {}

        async with anyio.create_task_group() as group:
            in_background(group, results, "logout", lambda: call(app, "/slow-clear-flash", cookie))
            with anyio.fail_after(10):
                await state["clear_loaded"].wait()
            results["login"] = await call(app, "/login", cookie)
            state["clear_go"].set()
        status, new_cookie, _ = results["login"]
        assert status == 200
        assert new_cookie is not None
        assert results["logout"][0] == 400
        await assert_empty(app, new_cookie, cookie)


async def test_a_logout_after_two_logins_ends_every_new_id(store_name: str, tmp_path: Path) -> None:
    """Logins chained (old → new → newer) and two in parallel on one id."""
    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {"login_loaded": anyio.Event(), "login_go": anyio.Event()}
        app = make_app(store, state)
        cookie = await seeded(app)
        results: list[tuple[int, str | None, bytes]] = []

        async def login() -> None:
            results.append(await call(app, "/login", cookie))

        async with anyio.create_task_group() as group:
            group.start_soon(login)
            group.start_soon(login)
            with anyio.fail_after(10):
                await state["login_loaded"].wait()
                await anyio.sleep(0.05)  # both loaded the old record
            state["login_go"].set()
        issued = [new for status, new, _ in results if status == 200 and new is not None]
        assert issued, results  # at least one login won
        status, newer, _ = await call(app, "/login", issued[0])  # a second login, chained
        assert status == 200
        assert newer is not None
        status, _, _ = await call(app, "/logout", cookie)  # the first, stale id
        assert status == 200
        await assert_empty(app, *issued, newer)


async def test_a_logout_with_an_unknown_id_stays_harmless(store_name: str, tmp_path: Path) -> None:
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, _ready())
        other = await seeded(app)
        cookie = await seeded(app)
        status, _, _ = await call(app, "/logout", cookie)
        assert status == 200
        status, _, _ = await call(app, "/logout", cookie)  # already gone: nothing to follow
        assert status == 200
        _, _, body = await call(app, "/view", other)
        assert json.loads(body) == {"owner": "alice"}


async def test_concurrent_new_sessions_never_share_an_id(store_name: str, tmp_path: Path) -> None:
    async with store_factory(store_name, tmp_path) as store:
        app = make_app(store, {})
        cookies: list[str | None] = []

        async def one(n: int) -> None:
            _, cookie, _ = await call(app, f"/new/{n}")
            cookies.append(cookie)

        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(one, n)
        assert None not in cookies
        assert len(set(cookies)) == 50
        for cookie in cookies[:5]:
            _, _, body = await call(app, "/view", cookie)
            assert body.startswith(b'{"n":')


async def test_records_stay_short_under_repeated_concurrent_writes(
    store_name: str, tmp_path: Path
) -> None:
    """Waves of overlapping writers: nothing lost, and compaction keeps the record short."""
    from asgi_sessions._record import decode_frames
    from asgi_sessions.crypto import store_key
    from asgi_sessions.serializers import JSONSerializer

    async with store_factory(store_name, tmp_path) as store:
        state: dict[str, Any] = {}
        app = make_app(store, state)
        cookie = await seeded(app)
        for wave in range(4):
            state["barrier"] = Barrier(20)

            async def one(n: int) -> None:
                status, _, _ = await call(app, f"/set/{n}", cookie)
                assert status == 200

            async with anyio.create_task_group() as group:
                for n in range(wave * 20, wave * 20 + 20):
                    group.start_soon(one, n)
        _, _, body = await call(app, "/view", cookie)
        data = json.loads(body)
        assert {k: v for k, v in data.items() if k != "owner"} == {f"k{n}": n for n in range(80)}
        blob = await store.read(store_key(cookie))
        assert blob is not None
        # 81 frames without compaction; with it, one wave's worth plus the snapshot.
        assert decode_frames(JSONSerializer(), blob).frames <= 22
