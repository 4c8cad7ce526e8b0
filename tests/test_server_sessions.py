"""The middleware's server-store path, against a real ``MemoryStore``.

Autoload (on, off, path prefixes) and ``SessionNotLoaded``; hashed,
strictly issued, create-only ids; update-only writes that turn a
resurrection into ``SessionInterrupted`` (driven with truly overlapping
requests on one event loop); concurrent requests that change different keys;
changes made after the headers went out; a store that is down at load or at
commit; and websocket scopes, for cookie and server sessions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_sessions import Session, SessionMiddleware, session_of
from asgi_sessions.crypto import forward_key, new_session_id, store_key, user_key
from asgi_sessions.errors import SessionError, SessionNotLoaded, SessionStoreUnavailable
from asgi_sessions.session import USER_KEY
from asgi_sessions.stores import MemoryStore, SessionStore, StoreKey
from tests.apps import in_background
from tests.instrumented import (
    SECRET,
    CountingStore,
    Handler,
    UnavailableStore,
    cookie_line,
    cookie_value,
    in_loop,
    make_backend,
    raw_request,
    session_app,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The raw-ASGI tests run on both backends: the middleware and MemoryStore are anyio-neutral."""
    backend: str = request.param
    return backend


ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
HEX64 = re.compile(r"[0-9a-f]{64}")


def _memory() -> CountingStore:
    return make_backend("memory").counting


async def seed(request: Request) -> dict[str, Any]:
    session_of(request)["user"] = "alice"
    return {}


async def sync_read(request: Request) -> dict[str, Any]:
    # Starlette-style synchronous access, no explicit load.
    return {"user": request.session.get("user"), "data": dict(request.session)}


async def load_then_read(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    return {"user": session.get("user"), "data": dict(session)}


async def write(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    session["n"] = session.get("n", 0) + 1
    return {}


async def logout(request: Request) -> dict[str, Any]:
    session_of(request).flush()
    return {}


async def untouched(request: Request) -> Response:
    return PlainTextResponse("ok")


ROUTES: dict[str, Handler] = {
    "/seed": seed,
    "/sync": sync_read,
    "/load": load_then_read,
    "/write": write,
    "/logout": logout,
    "/untouched": untouched,
    "/auto/sync": sync_read,
    "/manual/sync": sync_read,
}


def _client(store: SessionStore, **middleware: Any) -> TestClient:
    return TestClient(session_app(ROUTES, store=store, secret_key=None, **middleware))


def _replay(client: TestClient, path: str, value: str) -> Any:
    client.cookies.clear()
    return client.get(path, headers={"cookie": f"session={value}"})


# -- autoload and SessionNotLoaded -------------------------------------------------------


def test_autoload_true_allows_synchronous_access() -> None:
    with _client(_memory()) as client:
        client.get("/seed")
        assert client.get("/sync").json() == {"user": "alice", "data": {"user": "alice"}}


def test_autoload_false_requires_a_load() -> None:
    store = _memory()
    with _client(store, autoload=False) as client:
        client.get("/seed")
        store.reset()
        with pytest.raises(SessionNotLoaded) as info:
            client.get("/sync")
        assert store.total == 0
        message = str(info.value)
        # The three ways out.
        assert "await session.load()" in message
        assert "autoload" in message
        assert "fastapi" in message.lower()
        assert client.get("/load").json() == {"user": "alice", "data": {"user": "alice"}}
        assert store.calls["read"] == 1


@pytest.mark.parametrize(
    "access",
    [
        lambda s: s["user"],
        lambda s: s.get("user"),
        lambda s: "user" in s,
        len,
        list,
        lambda s: s.keys(),
        lambda s: s.items(),
        lambda s: s.__setitem__("x", 1),
        lambda s: s.pop("user", None),
        lambda s: s.update(x=1),
        lambda s: s.cycle_key(),
        lambda s: s.set_expiry(10),
        lambda s: s == {},
    ],
)
def test_every_synchronous_access_before_load_raises(access: Any) -> None:
    async def route(request: Request) -> dict[str, Any]:
        session = session_of(request)
        assert not session.is_loaded
        with pytest.raises(SessionNotLoaded):
            access(session)
        return {"ok": True}

    store = _memory()
    app = session_app({"/seed": seed, "/try": route}, store=store, autoload=False)
    with TestClient(app) as client:
        client.get("/seed")
        assert client.get("/try").json() == {"ok": True}


def test_autoload_path_prefixes() -> None:
    store = _memory()
    with _client(store, autoload=["/auto", "/seed"]) as client:
        client.get("/seed")
        store.reset()
        assert client.get("/auto/sync").json()["user"] == "alice"
        assert store.calls["read"] == 1
        store.reset()
        client.get("/untouched")
        assert store.total == 0
        with pytest.raises(SessionNotLoaded):
            client.get("/manual/sync")


def test_autoload_prefixes_match_the_path_the_routes_see() -> None:
    # Behind a root_path (uvicorn --root-path, or a Mount in front of the
    # app), the ASGI path keeps the prefix; before, the autoload prefixes
    # never matched there and synchronous access raised SessionNotLoaded.
    store = _memory()
    inner = session_app(ROUTES, store=store, secret_key=None, autoload=["/auto", "/seed"])
    with TestClient(inner, root_path="/app") as client:
        client.get("/app/seed")
        assert client.get("/app/auto/sync").json()["user"] == "alice"
        with pytest.raises(SessionNotLoaded):
            client.get("/app/manual/sync")
    mounted = Starlette(routes=[Mount("/sub", app=inner)])
    with TestClient(mounted) as client:
        client.get("/sub/seed")
        assert client.get("/sub/auto/sync").json()["user"] == "alice"
        with pytest.raises(SessionNotLoaded):
            client.get("/sub/manual/sync")


def test_session_without_cookie_needs_no_load() -> None:
    with _client(_memory(), autoload=False) as client:
        assert client.get("/sync").json() == {"user": None, "data": {}}


# -- ids: hashed, strict, create-only ----------------------------------------------------


def test_store_keys_are_hashes_of_the_cookie_value() -> None:
    store = _memory()
    with _client(store) as client:
        client.get("/seed")
        client.get("/write")
        client.get("/sync")
        value = client.cookies.get("session")
        assert value
        expected = hashlib.sha256(value.encode("ascii")).hexdigest()
        assert store.keys
        assert set(store.keys) == {expected}
        assert all(HEX64.fullmatch(key) for key in store.keys)
        assert not any(value in key for key in store.keys)
        blob = in_loop(client, store.inner.read, expected)
        assert blob is not None
        assert value.encode("ascii") not in blob


def test_new_session_id_is_created_only_and_well_formed() -> None:
    store = _memory()
    with _client(store) as client:
        response = client.get("/seed")
        value = cookie_value(response.headers.get_list("set-cookie"))
        assert value
        assert ID_PATTERN.fullmatch(value)
        assert dict(store.calls) == {"create": 1}
        # Ids are random: another session gets another one.
        client.cookies.clear()
        other = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
        assert other
        assert other != value


def test_unknown_id_is_never_adopted() -> None:
    store = _memory()
    unknown = new_session_id()
    with _client(store) as client:
        # Reading costs one store read and creates nothing.
        assert _replay(client, "/sync", unknown).json()["data"] == {}
        assert dict(store.calls) == {"read": 1}
        # Writing issues a fresh id instead of storing under the unknown one.
        response = _replay(client, "/seed", unknown)
        fresh = cookie_value(response.headers.get_list("set-cookie"))
        assert fresh
        assert fresh != unknown
        assert ID_PATTERN.fullmatch(fresh)
        assert in_loop(client, store.inner.read, store_key(unknown)) is None
        assert in_loop(client, store.inner.read, store_key(fresh)) is not None
        assert store.calls["create"] == 1
        # The unknown id was only ever looked up, never written.
        assert {method for method, key in store.log if key == store_key(unknown)} == {"read"}


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "A" * 42,
        "A" * 44,
        "A" * 42 + "B",  # non-canonical last character
        "A" * 41 + "+A",
        "A" * 41 + "/A",
        "A" * 41 + "=A",
        "A" * 41 + ".A",
        "\u00e9" * 43,
    ],
    ids=["word", "empty", "short", "long", "noncanonical", "plus", "slash", "pad", "dot", "latin1"],
)
def test_malformed_id_costs_no_store_call(value: str) -> None:
    store = _memory()
    with _client(store) as client:
        client.cookies.clear()
        header = {b"cookie": f"session={value}".encode("latin-1")}
        assert client.get("/load", headers=header).json()["data"] == {}
        assert store.total == 0
        response = client.get("/seed", headers=header)
        fresh = cookie_value(response.headers.get_list("set-cookie"))
        assert fresh
        assert ID_PATTERN.fullmatch(fresh)
        assert dict(store.calls) == {"create": 1}


# -- concurrency: update-only writes, merged appends ---------------------------------


async def _seed(app: Any) -> str:
    """Start a session through ``/seed``; its id."""
    session_id = cookie_value((await raw_request(app, "/seed")).set_cookies)
    assert session_id
    return session_id


async def cycle_to_admin(request: Request) -> dict[str, Any]:
    """A login, as far as the session sees one: a new id, and a privilege."""
    session = session_of(request)
    session.cycle_key()
    session["role"] = "admin"
    return {}


async def _assert_no_copy_left(store: CountingStore, session_id: str, why: str) -> None:
    """Every record created since ``store`` counted is gone, but the old id's forward record.

    That one names the copy and expires on its own.
    """
    forward = forward_key(store_key(session_id))
    for key in {key for method, key in store.log if method == "create"} - {forward}:
        assert await store.inner.read(key) is None, why


async def _overtaken_by_logout(
    change: Callable[[Session], None],
) -> tuple[CountingStore, str, Any, Any]:
    """Run a request that makes ``change`` and then waits, while a logout commits.

    Returns the store, the session id, the slow response and the logout's.
    """
    store = _memory()
    reached = anyio.Event()
    release = anyio.Event()

    async def slow(request: Request) -> dict[str, Any]:
        change(session_of(request))
        reached.set()
        await release.wait()  # the response (and the commit) waits for this
        return {}

    app = session_app({**ROUTES, "/slow": slow}, store=store, secret_key=None)
    session_id = await _seed(app)
    results: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        in_background(tg, results, "slow", lambda: raw_request(app, "/slow", cookie=session_id))
        await reached.wait()
        results["logout"] = await raw_request(app, "/logout", cookie=session_id)
        release.set()
    after = await raw_request(app, "/load", cookie=session_id)
    assert after.status == 200
    assert json.loads(after.body) == {"user": None, "data": {}}
    return store, session_id, results["slow"], results["logout"]


@pytest.mark.anyio
async def test_logout_during_a_slow_request_is_not_undone() -> None:
    def add_to_cart(session: Session) -> None:
        session["cart"] = ["book"]

    store, session_id, slow_response, logout_response = await _overtaken_by_logout(add_to_cart)
    assert logout_response.status == 200
    assert slow_response.status == 400  # SessionInterrupted, Django's answer
    assert b"interrupted" in slow_response.body.lower()
    assert cookie_line(slow_response.set_cookies) is None
    # The session stays deleted.
    assert await store.inner.read(store_key(session_id)) is None


@pytest.mark.anyio
async def test_logout_during_a_slow_cycle_key_is_not_undone() -> None:
    # A request that cycles the key (a privilege change) started before a
    # logout in another tab and commits after it: it must not hand out a
    # fresh id for the logged-out session.
    def elevate(session: Session) -> None:
        session["role"] = "admin"
        session.cycle_key()

    store, session_id, elevated, logout_response = await _overtaken_by_logout(elevate)
    assert logout_response.status == 200
    assert elevated.status == 400  # SessionInterrupted
    assert cookie_line(elevated.set_cookies) is None  # no new id handed out
    await _assert_no_copy_left(store, session_id, "a cycled copy of the session was kept")


class _PausingTake(CountingStore):
    """Pauses a cycle right after it took the old record, until released."""

    def __init__(self, inner: SessionStore) -> None:
        super().__init__(inner)
        self.pause_on: str | None = None
        self.taken = anyio.Event()
        self.release = anyio.Event()

    async def take(self, key: StoreKey) -> bytes | None:
        data = await super().take(key)
        if key == self.pause_on:
            self.pause_on = None
            self.taken.set()
            with anyio.fail_after(10):
                await self.release.wait()
        return data


@pytest.mark.anyio
@pytest.mark.parametrize("parallel_write", [False, True])
async def test_logout_between_a_cycles_take_and_its_commit_ends_the_new_id(
    parallel_write: bool,
) -> None:
    # The logout reaches the old id after the login took it, but before the
    # login finished (with a parallel write, it still has to carry keys over
    # to its copy). The logout follows the forward record and ends the copy;
    # the login either gets a 400 or hands out an id that is already dead.
    store = _PausingTake(MemoryStore())
    loaded = anyio.Event()
    go = anyio.Event()

    async def login(request: Request) -> dict[str, Any]:
        session = session_of(request)
        await session.load()
        loaded.set()
        with anyio.fail_after(10):
            await go.wait()
        session.cycle_key()
        session["role"] = "admin"
        return {}

    app = session_app({**ROUTES, "/login": login}, store=store, secret_key=None)
    session_id = await _seed(app)
    results: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        in_background(tg, results, "login", lambda: raw_request(app, "/login", cookie=session_id))
        with anyio.fail_after(10):
            await loaded.wait()
        if parallel_write:
            assert (await raw_request(app, "/write", cookie=session_id)).status == 200
        store.pause_on = store_key(session_id)
        go.set()
        with anyio.fail_after(10):
            await store.taken.wait()
        results["logout"] = await raw_request(app, "/logout", cookie=session_id)
        store.release.set()
    assert results["logout"].status == 200
    login_response = results["login"]
    assert login_response.status == (400 if parallel_write else 200)
    new_id = cookie_value(login_response.set_cookies)
    if parallel_write:
        assert new_id is None  # SessionInterrupted: no id handed out
    else:
        assert new_id
    for value in filter(None, (new_id, session_id)):
        after = await raw_request(app, "/load", cookie=value)
        assert json.loads(after.body) == {"user": None, "data": {}}
    await _assert_no_copy_left(store, session_id, "a cycled copy of the session was kept")


class _TakeFailsOnce(CountingStore):
    """A take of ``fail_on`` fails once, as in a short outage."""

    fail_on: str | None = None

    async def take(self, key: StoreKey) -> bytes | None:
        if key == self.fail_on:
            self.fail_on = None
            raise SessionStoreUnavailable("the test store blinked")
        return await super().take(key)


@pytest.mark.anyio
async def test_a_retried_logout_still_follows_a_login(anyio_backend: str) -> None:
    # A logout with the pre-login id fails part-way (503) while ending the
    # session the login moved to; the retry must still find where it went.
    store = _TakeFailsOnce(MemoryStore())
    app = session_app({**ROUTES, "/login": cycle_to_admin}, store=store, secret_key=None)
    session_id = await _seed(app)
    new_id = cookie_value((await raw_request(app, "/login", cookie=session_id)).set_cookies)
    assert new_id
    # The logout takes the old id (gone), reads its forward record, and its
    # take of the new id fails.
    store.fail_on = store_key(new_id)
    assert (await raw_request(app, "/logout", cookie=session_id)).status == 503
    assert (await raw_request(app, "/logout", cookie=session_id)).status == 200
    after = await raw_request(app, "/load", cookie=new_id)
    assert json.loads(after.body) == {"user": None, "data": {}}


@pytest.mark.anyio
@pytest.mark.parametrize("logins", [7, 9])
async def test_a_logout_with_an_old_id_follows_logins_or_says_why_not(
    logins: int, caplog: pytest.LogCaptureFixture
) -> None:
    # A logout sent with the first id after several logins follows the chain
    # of forward records to the newest id; past the hop limit it stops, and
    # a warning (naming no id) says that a newer record was left.
    app = session_app({**ROUTES, "/login": cycle_to_admin}, store=_memory(), secret_key=None)
    first = current = await _seed(app)
    for _ in range(logins):
        issued = cookie_value((await raw_request(app, "/login", cookie=current)).set_cookies)
        assert issued
        current = issued
    with caplog.at_level(logging.WARNING, logger="asgi_sessions"):
        assert (await raw_request(app, "/logout", cookie=first)).status == 200
    after = json.loads((await raw_request(app, "/load", cookie=current)).body)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if logins < 8:
        assert after == {"user": None, "data": {}}
        assert warnings == []
    else:
        assert after["data"]["role"] == "admin"  # beyond the limit: still logged in
        assert len(warnings) == 1
        assert "newer session record(s) were not ended" in warnings[0]
        assert first not in warnings[0]
        assert current not in warnings[0]


@pytest.mark.anyio
@pytest.mark.parametrize("autoload", [True, False])
@pytest.mark.parametrize("cookie", ["unknown-id", "foreign"])
async def test_logout_deletes_a_cookie_the_store_does_not_know(autoload: bool, cookie: str) -> None:
    # An id that expired in the store, or an old cookie of another library:
    # a logout still deletes it, so later requests stop sending it.
    value = new_session_id() if cookie == "unknown-id" else "eyJ1c2VyIjogMX0=.ZZ.sig"
    app = session_app(ROUTES, store=_memory(), secret_key=None, autoload=autoload)
    response = await raw_request(app, "/logout", cookie=value)
    assert response.status == 200
    line = cookie_line(response.set_cookies)
    assert line is not None
    assert "1970" in line or "max-age=0" in line.lower()


def _pop_then_mark(session: Session) -> None:
    session.pop("user")
    session.modified = True  # Django's idiom after changing a nested value


@pytest.mark.anyio
@pytest.mark.parametrize(
    "empty",
    [
        lambda session: session.pop("user"),
        lambda session: session.__delitem__("user"),
        lambda session: session.popitem(),
        _pop_then_mark,
    ],
    ids=["pop", "del", "popitem", "pop-then-modified"],
)
async def test_deleting_the_last_key_writes_a_removal_and_keeps_the_id(
    empty: Callable[[Session], object],
) -> None:
    # Not a logout: the removal is appended like any change (so a parallel
    # request's keys survive), the id stays, the session reads back empty.
    store = _memory()

    async def forget(request: Request) -> dict[str, Any]:
        empty(session_of(request))
        return {}

    app = session_app({**ROUTES, "/forget": forget}, store=store, secret_key=None)
    session_id = await _seed(app)
    store.log.clear()
    forgotten = await raw_request(app, "/forget", cookie=session_id)
    assert forgotten.status == 200
    assert [method for method, _ in store.log] == ["read", "append"]
    assert cookie_value(forgotten.set_cookies) == session_id  # kept, not deleted
    assert await store.inner.read(store_key(session_id)) is not None
    after = await raw_request(app, "/load", cookie=session_id)
    assert json.loads(after.body) == {"user": None, "data": {}}


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["clear", "flush"])
async def test_clear_and_flush_delete_the_record_and_the_cookie(how: str) -> None:
    # clear() is how Starlette apps log out: it ends the record, like flush().
    store = _memory()

    async def end(request: Request) -> dict[str, Any]:
        getattr(session_of(request), how)()
        return {}

    app = session_app({**ROUTES, "/end": end}, store=store, secret_key=None)
    session_id = await _seed(app)
    ended = await raw_request(app, "/end", cookie=session_id)
    assert ended.status == 200
    line = cookie_line(ended.set_cookies)
    assert line is not None
    assert "1970" in line or "max-age=0" in line.lower()
    assert await store.inner.read(store_key(session_id)) is None


@pytest.mark.anyio
async def test_a_cycle_overlapping_a_write_keeps_both_and_in_place_changes() -> None:
    # The carried-over keys are those the other request changed; a value
    # this request changed in place (not tracked) is still its own.
    store = _memory()
    reached = anyio.Event()
    release = anyio.Event()

    async def fill(request: Request) -> dict[str, Any]:
        session_of(request)["cart"] = ["book"]
        return {}

    async def elevate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["cart"].append("pen")  # in place: the snapshot still has it
        session.cycle_key()
        reached.set()
        await release.wait()
        return {}

    async def note(request: Request) -> dict[str, Any]:
        session_of(request)["note"] = "hi"
        return {}

    app = session_app(
        {**ROUTES, "/fill": fill, "/elevate": elevate, "/note": note},
        store=store,
        secret_key=None,
    )
    session_id = cookie_value((await raw_request(app, "/fill")).set_cookies)
    assert session_id
    results: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        in_background(
            tg, results, "elevate", lambda: raw_request(app, "/elevate", cookie=session_id)
        )
        await reached.wait()
        assert (await raw_request(app, "/note", cookie=session_id)).status == 200
        release.set()
    assert results["elevate"].status == 200
    new_id = cookie_value(results["elevate"].set_cookies)
    assert new_id
    assert new_id != session_id
    after = await raw_request(app, "/load", cookie=new_id)
    assert json.loads(after.body)["data"] == {"cart": ["book", "pen"], "note": "hi"}


@pytest.mark.anyio
async def test_a_user_id_carried_over_by_a_cycle_is_linked_to_the_copy() -> None:
    # A parallel request stores the user id on the old record while a cycle
    # runs; the copy carries it over and must be in the user's index, or
    # logout_everywhere() would miss it.
    store = MemoryStore()
    loaded, go = anyio.Event(), anyio.Event()

    async def elevate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        await session.load()
        loaded.set()
        with anyio.fail_after(10):
            await go.wait()
        session.cycle_key()
        return {}

    async def claim(request: Request) -> dict[str, Any]:
        session_of(request)[USER_KEY] = "alice"
        return {}

    app = session_app(
        {**ROUTES, "/elevate": elevate, "/claim": claim}, store=store, secret_key=None
    )
    session_id = await _seed(app)
    results: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        in_background(
            tg, results, "elevate", lambda: raw_request(app, "/elevate", cookie=session_id)
        )
        with anyio.fail_after(10):
            await loaded.wait()
        assert (await raw_request(app, "/claim", cookie=session_id)).status == 200
        go.set()
    new_id = cookie_value(results["elevate"].set_cookies)
    assert new_id
    assert store_key(new_id) in await store.delete_user(user_key("alice"))


class _TakeCommitsThenFails(CountingStore):
    """Its take deletes the record, then the answer is lost (a timeout)."""

    async def take(self, key: StoreKey) -> bytes | None:
        await super().take(key)
        raise SessionStoreUnavailable("the answer was lost")


@pytest.mark.anyio
async def test_a_cycle_whose_take_fails_leaves_no_copy_behind() -> None:
    store = _TakeCommitsThenFails(MemoryStore())
    app = session_app({**ROUTES, "/login": cycle_to_admin}, store=store, secret_key=None)
    session_id = await _seed(app)
    response = await raw_request(app, "/login", cookie=session_id)
    assert response.status == 503
    assert cookie_line(response.set_cookies) is None
    await _assert_no_copy_left(store, session_id, "the unissued copy was left behind")


async def _cycle_with_a_parallel_note(
    store: SessionStore,
    *,
    prepare: Callable[[Session], Awaitable[None]] | None = None,
    note_commits: str = "before",
) -> tuple[Any, Any, dict[str, Any] | None]:
    """A request that cycles its key while a parallel one sets ``note`` on the old id.

    Both load the session first. The parallel request commits ``"before"``
    the cycling one does, or ``"after"`` it (once the old record is taken).
    Returns the cycling response, the parallel one, and what the new id holds.
    """
    elevate_ready, elevate_go = anyio.Event(), anyio.Event()
    note_ready, note_go = anyio.Event(), anyio.Event()

    async def fill(request: Request) -> dict[str, Any]:
        session_of(request)["cart"] = ["book"]
        return {}

    async def elevate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        if prepare is not None:
            await prepare(session)
        session.cycle_key()
        elevate_ready.set()
        await elevate_go.wait()
        return {}

    async def note(request: Request) -> dict[str, Any]:
        session_of(request)["note"] = "hi"
        note_ready.set()
        await note_go.wait()
        return {}

    routes = {**ROUTES, "/fill": fill, "/elevate": elevate, "/note": note}
    app = session_app(routes, store=store, secret_key=None)
    session_id = cookie_value((await raw_request(app, "/fill")).set_cookies)
    assert session_id
    results: dict[str, Any] = {}
    done = {"/elevate": anyio.Event(), "/note": anyio.Event()}
    go = {"/elevate": elevate_go, "/note": note_go}

    async def run(path: str) -> None:
        results[path] = await raw_request(app, path, cookie=session_id)
        done[path].set()

    order = ["/note", "/elevate"] if note_commits == "before" else ["/elevate", "/note"]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "/elevate")
            tg.start_soon(run, "/note")
            await elevate_ready.wait()
            await note_ready.wait()
            for path in order:  # one commits and finishes, then the other
                go[path].set()
                await done[path].wait()
    new_id = cookie_value(results["/elevate"].set_cookies)
    data = None
    if new_id:
        data = json.loads((await raw_request(app, "/load", cookie=new_id)).body)["data"]
    return results["/elevate"], results["/note"], data


@pytest.mark.anyio
async def test_a_write_committed_after_the_cycle_gets_a_400() -> None:
    # The old record is taken atomically: a parallel write lands in what was
    # taken (and is carried over) or fails. It never gets a 200 and is lost.
    elevated, noted, data = await _cycle_with_a_parallel_note(_memory(), note_commits="after")
    assert elevated.status == 200
    assert noted.status == 400  # SessionInterrupted: the old id is gone
    assert data == {"cart": ["book"]}


@pytest.mark.anyio
async def test_a_write_committed_before_the_cycle_is_carried_over() -> None:
    elevated, noted, data = await _cycle_with_a_parallel_note(_memory())
    assert (elevated.status, noted.status) == (200, 200)
    assert data == {"cart": ["book"], "note": "hi"}


@pytest.mark.anyio
async def test_save_then_cycle_still_carries_over_parallel_writes() -> None:
    async def save_first(session: Session) -> None:
        session["step"] = "paid"
        await session.save()

    elevated, noted, data = await _cycle_with_a_parallel_note(_memory(), prepare=save_first)
    assert (elevated.status, noted.status) == (200, 200)
    assert data == {"cart": ["book"], "step": "paid", "note": "hi"}


@pytest.mark.anyio
async def test_cycling_an_emptied_session_keeps_a_parallel_write() -> None:
    async def empty(session: Session) -> None:
        del session["cart"]  # emptied key by key: the record stays

    elevated, noted, data = await _cycle_with_a_parallel_note(_memory(), prepare=empty)
    assert (elevated.status, noted.status) == (200, 200)
    assert data == {"note": "hi"}


@pytest.mark.anyio
async def test_a_login_after_a_logout_through_a_stale_cache_gets_a_400(tmp_path: Any) -> None:
    # WriteThroughStore: the logout's delete reached the database but not yet
    # the cache (its tombstone is the next round trip, or the cache blinked).
    # The cycle's check must ask the database, not the stale cached copy.
    from asgi_sessions.stores import FileStore, WriteThroughStore

    store = WriteThroughStore(MemoryStore(), FileStore(tmp_path))
    reached = anyio.Event()
    release = anyio.Event()

    async def elevate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session.cycle_key()
        reached.set()
        await release.wait()
        return {}

    app = session_app({**ROUTES, "/elevate": elevate}, store=store, secret_key=None)
    session_id = await _seed(app)
    results: dict[str, Any] = {}

    async with anyio.create_task_group() as tg:
        in_background(
            tg, results, "elevate", lambda: raw_request(app, "/elevate", cookie=session_id)
        )
        await reached.wait()
        await store.db.delete(store_key(session_id))  # the logout, first half
        assert await store.cache.read(store_key(session_id)) is not None  # stale
        release.set()
    assert results["elevate"].status == 400
    assert cookie_line(results["elevate"].set_cookies) is None


@pytest.mark.anyio
async def test_an_emptied_record_is_touched_like_any_other() -> None:
    store = _memory()

    async def forget(request: Request) -> dict[str, Any]:
        del session_of(request)["user"]
        return {}

    app = session_app({**ROUTES, "/forget": forget}, store=store, secret_key=None, idle_timeout=60)
    session_id = await _seed(app)
    assert (await raw_request(app, "/forget", cookie=session_id)).status == 200
    store.log.clear()
    assert (await raw_request(app, "/load", cookie=session_id)).status == 200
    assert [method for method, _ in store.log] == ["read", "touch"]


@pytest.mark.anyio
async def test_a_session_first_loaded_in_a_streamed_body_is_touched() -> None:
    # With autoload=False a streamed response (server-sent events, say) may
    # load the session only after its headers went out. Reading it is still
    # activity: idle_timeout must not end a session the user is using.
    store = _memory()

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"headers are out; "
            await session_of(request).load()
            yield json.dumps(dict(session_of(request))).encode()

        return StreamingResponse(body())

    async def silent(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"never loads the session"

        return StreamingResponse(body())

    routes = {**ROUTES, "/stream": stream, "/silent": silent}
    app = session_app(routes, store=store, secret_key=None, idle_timeout=60, autoload=False)
    session_id = await _seed(app)
    store.log.clear()
    streamed = await raw_request(app, "/stream", cookie=session_id)
    assert streamed.status == 200
    assert b'"user": "alice"' in streamed.body
    assert [method for method, _ in store.log] == ["read", "touch"]
    store.log.clear()
    assert (await raw_request(app, "/silent", cookie=session_id)).status == 200
    assert store.log == []  # untouched: no I/O, as ever


@pytest.mark.anyio
async def test_cycle_key_without_a_race_still_moves_the_session() -> None:
    store = _memory()

    async def elevate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["role"] = "admin"
        session.cycle_key()
        return {}

    app = session_app({**ROUTES, "/elevate": elevate}, store=store, secret_key=None)
    session_id = await _seed(app)
    elevated = await raw_request(app, "/elevate", cookie=session_id)
    assert elevated.status == 200
    new_id = cookie_value(elevated.set_cookies)
    assert new_id
    assert new_id != session_id
    assert await store.inner.read(store_key(session_id)) is None
    after = await raw_request(app, "/load", cookie=new_id)
    assert json.loads(after.body)["data"] == {"user": "alice", "role": "admin"}


@pytest.mark.anyio
async def test_fifty_overlapping_requests_each_keep_their_key() -> None:
    store = _memory()
    count = 50
    arrived = 0
    everyone_loaded = anyio.Event()

    async def add(request: Request) -> dict[str, Any]:
        nonlocal arrived
        index = request.path_params["index"]
        session = session_of(request)
        assert session.is_loaded  # autoload: every request loaded the same record
        session[f"k{index}"] = int(index)
        arrived += 1
        if arrived == count:
            everyone_loaded.set()
        await everyone_loaded.wait()  # nobody commits before everybody has loaded
        return {}

    async def dump(request: Request) -> dict[str, Any]:
        return dict(session_of(request))

    app = session_app(
        {"/seed": seed, "/add/{index}": add, "/dump": dump}, store=store, secret_key=None
    )
    session_id = await _seed(app)
    statuses: list[int] = []

    async def one(index: int) -> None:
        statuses.append((await raw_request(app, f"/add/{index}", cookie=session_id)).status)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index in range(count):
                tg.start_soon(one, index)

    assert statuses == [200] * count
    assert store.calls["read"] == count
    assert store.calls["append"] == count
    expected = {"user": "alice", **{f"k{i}": i for i in range(count)}}
    stored = json.loads((await raw_request(app, "/dump", cookie=session_id)).body)
    assert stored == expected

    # The record is now 51 frames long: the next change compacts it atomically.
    store.reset()
    await raw_request(app, "/add/999", cookie=session_id)
    assert store.calls["replace"] == 1
    compacted = json.loads((await raw_request(app, "/dump", cookie=session_id)).body)
    assert compacted == {**expected, "k999": 999}


# -- changes after the headers went out --------------------------------------------


def _late_app(store: Any, secret_key: str | None = None) -> tuple[SessionMiddleware, list[str]]:
    """A raw ASGI app that changes the session after ``http.response.start``."""
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = session_of(scope)
        await session.load()
        if scope["path"] == "/seed":
            session["user"] = "alice"
        body = repr(sorted(session.items())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/late":
            try:
                session["late"] = "yes"
            except SessionError as exc:
                errors.append(str(exc))
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(app, secret_key=secret_key, store=store), errors


@pytest.mark.anyio
async def test_change_after_headers_is_saved_for_server_stores() -> None:
    store = _memory()
    app, errors = _late_app(store)
    session_id = await _seed(app)
    late = await raw_request(app, "/late", cookie=session_id)
    assert late.status == 200
    assert late.set_cookies == []
    assert errors == []
    after = await raw_request(app, "/read", cookie=session_id)
    assert after.body == repr([("late", "yes"), ("user", "alice")]).encode()  # same id


@pytest.mark.anyio
async def test_a_late_change_that_cannot_be_saved_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A new session changed after the headers went out has no id and no
    # cookie can carry one now: the change is dropped with a warning. Before,
    # the SessionError escaped into the server after the response was sent.
    app, errors = _late_app(_memory())
    caplog.set_level(logging.WARNING, logger="asgi_sessions")
    late = await raw_request(app, "/late")
    assert late.status == 200
    assert errors == []
    dropped = [r for r in caplog.records if "late session changes dropped" in r.getMessage()]
    assert len(dropped) == 1


@pytest.mark.anyio
async def test_an_early_save_overtaken_by_a_logout_is_a_400_in_a_pure_asgi_app() -> None:
    store = _memory()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = session_of(scope)
        await session.load()
        if scope["path"] == "/seed":
            session["user"] = "alice"
        else:
            # A logout lands between this request's load and its early save.
            await store.inner.delete(store_key(session.session_key or ""))
            session["progress"] = 1
            await session.save()  # raises SessionInterrupted: answered 400
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = SessionMiddleware(app, store=store)
    session_id = await _seed(wrapped)
    reply = await raw_request(wrapped, "/work", cookie=session_id)
    assert reply.status == 400
    assert reply.set_cookies == []
    assert await store.inner.read(store_key(session_id)) is None  # nothing resurrected


@pytest.mark.anyio
async def test_change_after_headers_raises_for_cookie_sessions() -> None:
    app, errors = _late_app(None, secret_key=SECRET)
    value = cookie_value((await raw_request(app, "/seed")).set_cookies)
    assert value
    late = await raw_request(app, "/late", cookie=value)
    assert late.status == 200
    assert len(errors) == 1
    assert "headers" in errors[0]


# -- a store that is down --------------------------------------------------------------


async def _unavailable(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("try again later", status_code=503)


async def catch_then_write(request: Request) -> dict[str, Any]:
    session = session_of(request)
    with contextlib.suppress(SessionStoreUnavailable):
        await session.load()
    try:
        session["x"] = 1
    except SessionStoreUnavailable:
        return {"write": "refused"}
    return {"write": "accepted"}  # pragma: no cover - a failed load must refuse writes


def _down_client(store: SessionStore, **middleware: Any) -> TestClient:
    app = session_app(
        {**ROUTES, "/catch": catch_then_write},
        store=store,
        secret_key=None,
        exception_handlers={SessionStoreUnavailable: _unavailable},
        **middleware,
    )
    return TestClient(app)


@pytest.mark.parametrize("autoload", [True, False])
def test_store_down_at_load(autoload: bool) -> None:
    store = UnavailableStore()
    session_id = new_session_id()
    with _down_client(store, autoload=autoload) as client:
        # Without autoload, /sync raises SessionNotLoaded before any I/O.
        for path in ["/load", "/write"] + (["/sync"] if autoload else []):
            response = _replay(client, path, session_id)
            assert response.status_code == 503
            assert cookie_line(response.headers.get_list("set-cookie")) is None
        plain = _replay(client, "/untouched", session_id)
        assert plain.status_code == 200
        assert plain.text == "ok"
        caught = _replay(client, "/catch", session_id)
        assert caught.json() == {"write": "refused"}
        assert cookie_line(caught.headers.get_list("set-cookie")) is None
    # Only reads were attempted: a failed load is never followed by a write.
    assert set(store.calls) == {"read"}


def test_flush_after_a_failed_load_still_logs_out() -> None:
    store = _memory()
    with _down_client(store) as client:
        session_id = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
        assert session_id
        store.reset()
        store.fail = {"read"}
        response = _replay(client, "/logout", session_id)
        assert response.status_code == 200
        line = cookie_line(response.headers.get_list("set-cookie"))
        assert line is not None
        assert "expires=Thu, 01 Jan 1970" in line
        assert dict(store.calls) == {"read": 1, "take": 1}  # and no write
        store.fail = set()
        assert in_loop(client, store.inner.read, store_key(session_id)) is None
        assert _replay(client, "/load", session_id).json()["data"] == {}


@pytest.mark.parametrize(
    ("failing", "path", "seeded"),
    [
        ("create", "/seed", False),
        ("append", "/write", True),
        ("take", "/logout", True),
    ],
)
def test_commit_failure_is_a_503(failing: str, path: str, seeded: bool) -> None:
    store = _memory()
    with _down_client(store) as client:
        session_id = None
        if seeded:
            session_id = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
            assert session_id
        store.fail = {failing}
        client.cookies.clear()
        headers = {"cookie": f"session={session_id}"} if session_id else {}
        response = client.get(path, headers=headers)
        assert response.status_code == 503
        assert cookie_line(response.headers.get_list("set-cookie")) is None
        assert store.calls[failing] == 1
        if session_id is not None:
            store.fail = set()
            # The stored session is as it was before the failed request.
            assert _replay(client, "/load", session_id).json()["data"] == {"user": "alice"}


# -- websockets ------------------------------------------------------------------------


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    session = session_of(websocket)
    await session.load()
    await websocket.send_json({"data": dict(session)})
    command = await websocket.receive_text()
    try:
        if command == "change":
            session["ws"] = "changed"
        elif command == "save":
            session["ws"] = "saved"
            await session.save()
            await websocket.send_json({"modified": session.modified})
            await websocket.receive_text()
        elif command == "save-new":
            session["ws"] = "new"
            try:
                await session.save()
            finally:
                session.clear()
    except SessionError as exc:
        await websocket.send_json({"error": type(exc).__name__})
    else:
        await websocket.send_json({"ok": True})
    await websocket.close()


async def ws_untouched_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


async def seed_route(request: Request) -> Response:
    return JSONResponse(await seed(request))


async def load_route(request: Request) -> Response:
    return JSONResponse(await load_then_read(request))


def _ws_client(store: Any, secret_key: str | None = None, **middleware: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/seed", seed_route),
            Route("/load", load_route),
            WebSocketRoute("/ws", ws_endpoint),
            WebSocketRoute("/ws-untouched", ws_untouched_endpoint),
        ],
        middleware=[
            Middleware(SessionMiddleware, secret_key=secret_key, store=store, **middleware)
        ],
    )
    return TestClient(app)


@pytest.fixture
def cookie_ws() -> Iterator[TestClient]:
    with _ws_client(None, secret_key=SECRET) as client:
        client.get("/seed")
        yield client


def test_websocket_reads_a_cookie_session(cookie_ws: TestClient) -> None:
    with cookie_ws.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"data": {"user": "alice"}}
        ws.send_text("nothing")
        assert ws.receive_json() == {"ok": True}


def test_websocket_cannot_change_a_cookie_session(cookie_ws: TestClient) -> None:
    with cookie_ws.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text("change")
        assert ws.receive_json() == {"error": "SessionError"}
    with cookie_ws.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text("save")
        assert ws.receive_json() == {"error": "SessionError"}


@pytest.mark.parametrize("autoload", [True, False])
def test_websocket_server_session_saves_on_disconnect(autoload: bool) -> None:
    store = _memory()
    with _ws_client(store, autoload=autoload) as client:
        client.get("/seed")
        store.reset()
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"data": {"user": "alice"}}
            ws.send_text("change")
            assert ws.receive_json() == {"ok": True}
        assert client.get("/load").json()["data"] == {"user": "alice", "ws": "changed"}
    assert store.calls["append"] == 1


def test_websocket_server_session_explicit_save() -> None:
    store = _memory()
    with _ws_client(store) as client:
        client.get("/seed")
        store.reset()
        with client.websocket_connect("/ws") as ws:
            ws.receive_json()
            ws.send_text("save")
            assert ws.receive_json() == {"modified": False}
            assert store.calls["append"] == 1  # written before the socket closed
            ws.send_text("done")
            assert ws.receive_json() == {"ok": True}
        assert store.calls["append"] == 1  # nothing left to write on disconnect
        assert client.get("/load").json()["data"] == {"user": "alice", "ws": "saved"}


def test_websocket_cannot_create_a_server_session() -> None:
    store = _memory()
    with _ws_client(store) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"data": {}}
        ws.send_text("save-new")
        assert ws.receive_json() == {"error": "SessionError"}
    assert store.writes == 0


class Clock:
    """Moves the session's clock and a MemoryStore's TTL clock together, by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: CountingStore) -> None:
        from asgi_sessions import session as session_module

        self.offset = 0.0
        wall, monotonic = session_module._time, store.inner._clock  # type: ignore[attr-defined]
        monkeypatch.setattr(session_module, "_time", lambda: wall() + self.offset)
        monkeypatch.setattr(store.inner, "_clock", lambda: monotonic() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.mark.parametrize("autoload", [True, False])
def test_a_websocket_that_loads_the_session_moves_its_idle_deadline(
    monkeypatch: pytest.MonkeyPatch, autoload: bool
) -> None:
    # Loaded at the handshake (autoload: touched at accept) or by the handler
    # after accept (touched at the end): either way the connection was
    # activity, as an HTTP request that read the session is.
    store = _memory()
    clock = Clock(monkeypatch, store)
    with _ws_client(store, autoload=autoload, idle_timeout=60) as client:
        client.get("/seed")
        clock.advance(40)
        store.reset()
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"data": {"user": "alice"}}
            ws.send_text("nothing")
            assert ws.receive_json() == {"ok": True}
        assert store.calls["touch"] == 1, "one touch, as one HTTP read costs"
        assert store.writes == 0
        clock.advance(40)  # 80 s after the seed, 40 s after the websocket
        assert client.get("/load").json()["data"] == {"user": "alice"}


def test_a_long_websocket_counts_as_activity_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _memory()
    clock = Clock(monkeypatch, store)
    with _ws_client(store, idle_timeout=60) as client:
        client.get("/seed")
        store.reset()
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"data": {"user": "alice"}}
            assert store.calls["touch"] == 1  # at accept
            clock.advance(50)  # a connection open for 50 s
            ws.send_text("nothing")
            assert ws.receive_json() == {"ok": True}
        assert store.calls["touch"] == 2  # and again at its end
        clock.advance(50)  # 100 s after the accept, 50 s after the end
        assert client.get("/load").json()["data"] == {"user": "alice"}


def test_a_websocket_that_never_loads_the_session_costs_no_round_trip() -> None:
    store = _memory()
    with _ws_client(store, autoload=False, idle_timeout=60, save_every_request=True) as client:
        client.get("/seed")
        store.reset()
        with client.websocket_connect("/ws-untouched") as ws:
            assert ws.receive_text() == "hello"
    # With autoload but no cookie, loading needs no store either.
    client = _ws_client(store, idle_timeout=60, save_every_request=True)
    with client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"data": {}}
        ws.send_text("nothing")
        assert ws.receive_json() == {"ok": True}
    assert store.total == 0


def test_save_every_request_rewrites_a_session_a_websocket_loaded() -> None:
    store = _memory()
    with _ws_client(store, save_every_request=True) as client:
        client.get("/seed")
        store.reset()
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"data": {"user": "alice"}}
            ws.send_text("nothing")
            assert ws.receive_json() == {"ok": True}
        assert store.calls["read"] == 1
        assert store.writes == 1, "one rewrite in the connection's second, as one request"
        assert client.get("/load").json()["data"] == {"user": "alice"}


def test_a_websocket_does_not_refresh_a_cookie_session() -> None:
    # No cookie can be sent over a websocket: its idle deadline is in the
    # cookie, so only HTTP requests move it (docs/websockets.md says so).
    cookies = make_backend("cookie").cookies
    with _ws_client(cookies, secret_key=SECRET, idle_timeout=60) as client:
        client.get("/seed")
        cookies.reset()
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"data": {"user": "alice"}}
            ws.send_text("nothing")
            assert ws.receive_json() == {"ok": True}
    assert (cookies.opens, cookies.seals) == (1, 0)


# -- Django's idiom: a nested change, then modified = True ---------------------------


@pytest.mark.parametrize("by_hand", [True, False])
def test_setting_modified_by_hand_saves_a_nested_change(by_hand: bool) -> None:
    async def add(request: Request) -> Response:
        session = request.session
        session.setdefault("cart", [])
        return PlainTextResponse("ok")

    async def nested(request: Request) -> Response:
        request.session["cart"].append("tea")  # invisible to the session
        if by_hand:
            session_of(request).modified = True
        else:
            session_of(request).mark_modified()
        return PlainTextResponse("ok")

    async def show(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    app = Starlette(
        routes=[Route("/add", add), Route("/nested", nested), Route("/show", show)],
        middleware=[Middleware(SessionMiddleware, store=MemoryStore())],
    )
    with TestClient(app) as client:
        client.get("/add")
        client.get("/nested")
        client.get("/nested")
        assert client.get("/show").json() == {"cart": ["tea", "tea"]}


def test_a_key_deleted_before_mark_modified_stays_deleted() -> None:
    # Django's flash-and-cart idiom: pop a one-shot message, change a nested
    # value, then say so by hand. Every key is saved, and the popped one is gone.
    async def add(request: Request) -> Response:
        request.session.update({"flash": "welcome", "cart": [], "theme": "dark"})
        return PlainTextResponse("ok")

    async def consume(request: Request) -> Response:
        session = session_of(request)
        session.pop("flash")
        session["cart"].append("tea")
        del session["theme"]
        session.modified = True
        return PlainTextResponse("ok")

    async def show(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    app = Starlette(
        routes=[Route("/add", add), Route("/consume", consume), Route("/show", show)],
        middleware=[Middleware(SessionMiddleware, store=MemoryStore())],
    )
    with TestClient(app) as client:
        client.get("/add")
        client.get("/consume")
        assert client.get("/show").json() == {"cart": ["tea"]}


@pytest.mark.anyio
async def test_a_push_only_websocket_saves_when_send_finds_the_client_gone() -> None:
    # The endpoint never calls receive(): it learns of the disconnect from
    # send(), which raises an OSError (uvicorn's ClientDisconnected) that
    # Starlette turns into WebSocketDisconnect. That is a normal end: save.
    store = MemoryStore()

    async def push(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["seen"] = True
        while True:
            await websocket.send_text("tick")

    async def login(request: Request) -> Response:
        request.session["user"] = "alice"
        return PlainTextResponse("ok")

    async def show(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    app = Starlette(
        routes=[Route("/login", login), Route("/show", show), WebSocketRoute("/push", push)]
    )
    app.add_middleware(SessionMiddleware, store=store)
    session_id = cookie_value((await raw_request(app, "/login")).set_cookies)
    assert session_id
    scope: Scope = {
        "type": "websocket",
        "path": "/push",
        "raw_path": b"/push",
        "query_string": b"",
        "root_path": "",
        "scheme": "ws",
        "headers": [(b"host", b"testserver"), (b"cookie", f"session={session_id}".encode())],
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    sent: list[str] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message["type"])
        if len(sent) > 2:
            raise OSError("the client went away")

    with pytest.raises(WebSocketDisconnect):
        await app(scope, receive, send)
    shown = await raw_request(app, "/show", cookie=session_id)
    assert json.loads(shown.body) == {"user": "alice", "seen": True}


def test_a_websocket_change_that_cannot_be_saved_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A new session changed in a websocket cannot get an id (no cookie can be
    sent): at disconnect the change is dropped with a warning, not an error."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["draft"] = "unsaved"
        await websocket.receive_text()  # lets WebSocketDisconnect propagate

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(SessionMiddleware, store=MemoryStore())
    caplog.set_level(logging.WARNING, logger="asgi_sessions")
    client = TestClient(app)
    # The endpoint's own WebSocketDisconnect comes back, not a SessionError.
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as ws:
        ws.close()
    assert any("websocket session changes dropped" in r.getMessage() for r in caplog.records)


def test_a_websocket_change_dropped_at_close_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["draft"] = "unsaved"
        await websocket.close()  # the save is tried here, and not again at return

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(SessionMiddleware, store=MemoryStore())
    caplog.set_level(logging.WARNING, logger="asgi_sessions")
    with TestClient(app).websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect):
        ws.receive_text()
    dropped = [r for r in caplog.records if "websocket session changes dropped" in r.getMessage()]
    assert len(dropped) == 1
