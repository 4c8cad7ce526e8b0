"""Django's session API on ``Session``, standalone and through the middleware.

Modelled on the groups of Django's own session tests (new session, get, pop,
setdefault, update, keys/values/items, clear, flush, cycle_key, test cookie,
async mirrors, bad cookies), with the modified/accessed flags of Starlette's
``Session``. Request-level tests run against the encrypted cookie store and
``MemoryStore``. Expiry is in test_expiry.py.
"""

from __future__ import annotations

import copy
import json
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from asgi_sessions import Session, session_of
from asgi_sessions.crypto import new_session_id, store_key
from tests.instrumented import (
    Backend,
    ClientFactory,
    cookie_line,
    cookie_value,
    in_loop,
)

# -- the flags after each operation -------------------------------------------------


def _del(s: Session) -> None:
    del s["a"]


def _ior(s: Session) -> None:
    s |= {"c": 3}


def _set(s: Session) -> None:
    s["c"] = 3


def _set_same(s: Session) -> None:
    s["a"] = 1


# (name, operation on a session holding {"a": 1, "b": 2}, does it modify?)
OPERATIONS: list[tuple[str, Callable[[Session], object], bool]] = [
    ("get", lambda s: s.get("a"), False),
    ("get-missing", lambda s: s.get("zz", 0), False),
    ("getitem", lambda s: s["a"], False),
    ("contains", lambda s: "a" in s, False),
    ("len", len, False),
    ("iter", list, False),
    ("keys", lambda s: list(s.keys()), False),
    ("values", lambda s: list(s.values()), False),
    ("items", lambda s: list(s.items()), False),
    ("copy", lambda s: s.copy(), False),
    ("or", lambda s: s | {"c": 3}, False),
    ("json", json.dumps, False),
    ("setitem", _set, True),
    ("setitem-same-value", _set_same, True),
    ("delitem", _del, True),
    ("pop-present", lambda s: s.pop("a"), True),
    ("pop-missing-default", lambda s: s.pop("zz", None), False),
    ("setdefault-present", lambda s: s.setdefault("a", 9), False),
    ("setdefault-absent", lambda s: s.setdefault("c", 3), True),
    ("popitem", lambda s: s.popitem(), True),
    ("update", lambda s: s.update({"c": 3}), True),
    ("update-same-values", lambda s: s.update({"a": 1}), True),
    ("update-nothing", lambda s: s.update(), True),
    ("ior", _ior, True),
    ("clear", lambda s: s.clear(), True),
    ("mark_modified", lambda s: s.mark_modified(), True),
    ("flush", lambda s: s.flush(), True),
    ("cycle_key", lambda s: s.cycle_key(), True),
    ("set_expiry", lambda s: s.set_expiry(300), True),
    ("set_test_cookie", lambda s: s.set_test_cookie(), True),
    ("test_cookie_worked", lambda s: s.test_cookie_worked(), False),
    ("delete_test_cookie-absent", lambda s: s.delete_test_cookie(), False),
    ("get_expiry_age", lambda s: s.get_expiry_age(), False),
    ("is_empty", lambda s: s.is_empty(), False),
]
OPERATION_IDS = [name for name, _, _ in OPERATIONS]


@pytest.mark.parametrize(("name", "operation", "modifies"), OPERATIONS, ids=OPERATION_IDS)
def test_flags_after_each_operation(
    name: str, operation: Callable[[Session], object], modifies: bool
) -> None:
    session = Session({"a": 1, "b": 2})
    operation(session)
    assert session.modified is modifies
    # As Starlette's Session: reading does not mark it accessed (request.session does).
    assert session.accessed is modifies


def test_mark_accessed_sets_only_accessed() -> None:
    session = Session({"a": 1})
    session.mark_accessed()
    assert session.accessed
    assert not session.modified


def test_failed_operations_still_follow_starlette() -> None:
    # popitem and del always mark modified, pop of a missing key never does.
    empty = Session()
    with pytest.raises(KeyError):
        empty.popitem()
    assert not empty.modified
    with pytest.raises(KeyError):
        empty.pop("missing")
    assert not empty.modified
    with pytest.raises(KeyError):
        del empty["missing"]
    assert empty.modified


# -- Session(...) on its own -------------------------------------------------------


def test_standalone_session_is_a_loaded_dict() -> None:
    session = Session({"a": 1, "nested": {"b": [1, 2]}})
    assert isinstance(session, dict)
    assert session.is_loaded
    assert session == {"a": 1, "nested": {"b": [1, 2]}}
    assert dict(session) == {"a": 1, "nested": {"b": [1, 2]}}
    assert {**session} == {"a": 1, "nested": {"b": [1, 2]}}
    assert json.loads(json.dumps(session)) == {"a": 1, "nested": {"b": [1, 2]}}
    assert session | {"c": 3} == {"a": 1, "nested": {"b": [1, 2]}, "c": 3}
    assert {"c": 3} | session == {"c": 3, "a": 1, "nested": {"b": [1, 2]}}
    assert sorted(session) == ["a", "nested"]
    assert len(session) == 2
    assert "Session(" in repr(session)
    assert not session.modified
    assert not session.accessed


def test_standalone_session_builds_like_dict_and_takes_attributes() -> None:
    # Session keeps its hot state in slots; it must still build like a dict,
    # take attributes of an app's own, subclass, copy and pickle.
    assert Session(a=1) == Session([("a", 1)]) == Session({"a": 1}) == {"a": 1}
    session = Session({"a": 1})
    session.note = "the app's own attribute"  # type: ignore[attr-defined]
    assert session.note == "the app's own attribute"  # type: ignore[attr-defined]

    class Flashing(Session):
        def flash(self, text: str) -> None:
            self.setdefault("flash", []).append(text)

    flashing = Flashing()
    flashing.flash("saved")
    assert flashing == {"flash": ["saved"]}
    assert flashing.modified
    assert flashing.accessed
    for clone in (copy.copy(session), pickle.loads(pickle.dumps(session))):
        assert clone == {"a": 1}
        assert clone.is_loaded
        assert not clone.modified
        clone["b"] = 2
        assert clone.modified
        assert session == {"a": 1}


def test_ior_keeps_the_same_session_object() -> None:
    session = Session({"a": 1})
    same = session
    session |= {"b": 2}
    assert session is same
    assert session == {"a": 1, "b": 2}


def test_new_session() -> None:
    session = Session()
    assert not session.modified
    assert not session.accessed
    assert session.is_empty()
    assert session.session_key is None
    assert session.get("cat") is None
    assert session.get("cat", "meow") == "meow"


def test_store_and_read() -> None:
    session = Session()
    session["cat"] = "cat"
    assert session["cat"] == "cat"
    assert "cat" in session
    assert not session.is_empty()


def test_pop_group() -> None:
    session = Session({"some key": "exists"})
    assert session.pop("some key") == "exists"
    assert session.modified
    assert session.get("some key") is None

    session = Session({"some key": "exists"})
    assert session.pop("nope", "does not exist") == "does not exist"
    assert session.pop("nope", None) is None
    assert not session.modified
    with pytest.raises(KeyError):
        session.pop("nope")


def test_defaults_by_keyword_as_in_django() -> None:
    session = Session({"a": 1})
    assert session.get("zz", default=0) == 0
    assert session.pop("zz", default=0) == 0
    assert not session.modified
    assert session.pop("a", default=0) == 1
    assert session.modified
    assert session.has_key("a") is False
    session["b"] = 2
    assert session.has_key("b")


def test_setdefault_group() -> None:
    session = Session()
    assert session.setdefault("foo", "bar") == "bar"
    assert session.modified
    session = Session({"foo": "bar"})
    assert session.setdefault("foo", "baz") == "bar"
    assert not session.modified


def test_update_keys_values_items() -> None:
    session = Session({"x": 1})
    session.update({"update key": 1}, kw=2)
    assert session.modified
    assert session.get("update key") == 1
    assert list(session.keys()) == ["x", "update key", "kw"]
    assert list(session.values()) == [1, 1, 2]
    assert list(session.items()) == [("x", 1), ("update key", 1), ("kw", 2)]


def test_clear_group() -> None:
    session = Session({"x": 1})
    session.clear()
    assert session == {}
    assert session.modified
    assert session.is_empty()


def test_nested_values_are_not_tracked() -> None:
    session = Session({"cart": [1]})
    session["cart"].append(2)
    assert not session.modified  # reassign the key or call mark_modified()
    session.mark_modified()
    assert session.modified


def test_flush_standalone() -> None:
    session = Session({"x": 1})
    session.flush()
    assert session == {}
    assert session.session_key is None
    assert session.modified
    assert session.is_empty()


def test_cycle_key_standalone_keeps_data() -> None:
    session = Session({"x": 1})
    session.cycle_key()
    assert session == {"x": 1}
    assert session.modified


def test_session_key_is_read_only() -> None:
    session = Session()
    with pytest.raises(AttributeError):
        session.session_key = "x"  # type: ignore[misc]


def test_test_cookie_standalone() -> None:
    session = Session()
    assert not session.test_cookie_worked()
    session.set_test_cookie()
    assert session.test_cookie_worked()
    session.delete_test_cookie()
    assert not session.test_cookie_worked()


@pytest.mark.asyncio
async def test_async_mirrors_standalone() -> None:
    session = Session({"a": 1, "b": 2})
    await session.load()  # already loaded: a no-op
    assert await session.aget("a") == 1
    assert await session.aget("zz", "d") == "d"
    await session.aset("c", 3)
    assert session.modified
    assert await session.asetdefault("c", 99) == 3
    assert await session.asetdefault("d", 4) == 4
    assert await session.apop("b") == 2
    assert await session.apop("b", "gone") == "gone"
    await session.aupdate({"e": 5}, f=6)
    assert await session.ahas_key("e")
    assert not await session.ahas_key("b")
    assert await session.akeys() == ["a", "c", "d", "e", "f"]
    assert await session.avalues() == [1, 3, 4, 5, 6]
    assert await session.aitems() == [("a", 1), ("c", 3), ("d", 4), ("e", 5), ("f", 6)]
    await session.acycle_key()
    assert session == {"a": 1, "c": 3, "d": 4, "e": 5, "f": 6}
    await session.aflush()
    assert session == {}
    assert session.is_empty()


@pytest.mark.asyncio
async def test_async_mirrors_of_expiry_and_test_cookie() -> None:
    session = Session({"a": 1})
    assert await session.aget("zz", default=5) == 5
    assert await session.apop("zz", default=6) == 6
    with pytest.raises(KeyError):
        await session.apop("zz")
    assert await session.aget_session_cookie_age() == 14 * 86_400
    await session.aset_expiry(300)
    assert await session.aget_expiry_age() == 300
    expected = datetime.now(UTC) + timedelta(seconds=300)
    assert abs((await session.aget_expiry_date() - expected).total_seconds()) <= 1
    assert not await session.aget_expire_at_browser_close()
    await session.aset_expiry(0)
    assert await session.aget_expire_at_browser_close()
    assert not await session.atest_cookie_worked()
    await session.aset_test_cookie()
    assert await session.atest_cookie_worked()
    await session.adelete_test_cookie()
    assert not await session.atest_cookie_worked()


def test_naive_datetimes_mean_utc_in_every_expiry_method(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before, get_expiry_age(expiry=naive) read the naive moment in local time.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        naive = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(hours=1)
        session = Session()
        assert 3598 <= session.get_expiry_age(expiry=naive) <= 3600
        assert session.get_expiry_date(expiry=naive) == naive.replace(tzinfo=UTC)
        start = naive - timedelta(hours=1)
        assert session.get_expiry_age(modification=start, expiry=naive) == 3600
        assert session.get_expiry_date(modification=start, expiry=600) == (
            start.replace(tzinfo=UTC) + timedelta(seconds=600)
        )
        session.set_expiry(naive)
        assert 3598 <= session.get_expiry_age() <= 3600
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.asyncio
async def test_async_reads_do_not_modify() -> None:
    session = Session({"a": 1})
    await session.aget("a")
    await session.apop("zz", None)
    await session.asetdefault("a", 2)
    await session.ahas_key("a")
    await session.akeys()
    await session.avalues()
    await session.aitems()
    assert not session.modified


# -- through the middleware, for the cookie store and MemoryStore --------------------


async def _dump(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    return {"data": dict(session), "key": session.session_key}


async def _seed(request: Request) -> dict[str, Any]:
    request.session.update({"a": 1, "b": 2})
    return {}


def _stored(client: TestClient, backend: Backend, session_id: str) -> bytes | None:
    """The record a server store holds for ``session_id`` (read past the counter)."""
    return in_loop(client, backend.counting.inner.read, store_key(session_id))


def _replay(client: TestClient, path: str, value: str) -> Any:
    """GET ``path`` carrying exactly the cookie ``session=value``."""
    client.cookies.clear()
    return client.get(path, headers={"cookie": f"session={value}"})


@pytest.mark.parametrize(("name", "operation", "modifies"), OPERATIONS, ids=OPERATION_IDS)
def test_operation_saves_only_when_it_modifies(
    make_client: ClientFactory,
    name: str,
    operation: Callable[[Session], object],
    modifies: bool,
) -> None:
    async def apply(request: Request) -> dict[str, Any]:
        session = session_of(request)
        operation(session)
        return {"modified": session.modified, "accessed": session.accessed}

    client = make_client({"/seed": _seed, "/op": apply, "/dump": _dump})
    assert cookie_value(client.get("/seed").headers.get_list("set-cookie")) is not None
    response = client.get("/op")
    # request.session marks the session accessed; only changes mark it modified.
    assert response.json() == {"modified": modifies, "accessed": True}
    assert (cookie_line(response.headers.get_list("set-cookie")) is not None) is modifies
    assert response.headers["vary"] == "Cookie"


def test_roundtrip(make_client: ClientFactory, backend: Backend) -> None:
    async def store(request: Request) -> dict[str, Any]:
        request.session["cat"] = "meow"
        request.session["n"] = [1, {"deep": None}]
        return {}

    client = make_client({"/store": store, "/dump": _dump})
    response = client.get("/store")
    value = cookie_value(response.headers.get_list("set-cookie"))
    assert value
    dumped = client.get("/dump").json()
    assert dumped["data"] == {"cat": "meow", "n": [1, {"deep": None}]}
    if backend.server:
        assert dumped["key"] == value
    else:
        assert dumped["key"] is None
        assert "meow" not in value  # encrypted


def test_session_key_exists_only_once_committed(
    make_client: ClientFactory, backend: Backend
) -> None:
    async def store(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["x"] = 1
        return {"key": session.session_key}

    client = make_client({"/store": store, "/dump": _dump})
    assert client.get("/store").json() == {"key": None}
    key = client.get("/dump").json()["key"]
    assert (key is not None) is backend.server


def test_flush_logs_out(make_client: ClientFactory, backend: Backend) -> None:
    async def flush(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session.flush()
        return {"data": dict(session), "key": session.session_key}

    client = make_client({"/seed": _seed, "/flush": flush, "/dump": _dump})
    old = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
    assert old
    if backend.server:
        assert _stored(client, backend, old) is not None

    response = client.get("/flush")
    assert response.json() == {"data": {}, "key": None}
    deletion = cookie_line(response.headers.get_list("set-cookie"))
    assert deletion is not None
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in deletion
    assert client.get("/dump").json() == {"data": {}, "key": None}
    if backend.server:
        # The old record is gone: replaying the old cookie finds nothing.
        assert _stored(client, backend, old) is None
        assert _replay(client, "/dump", old).json() == {"data": {}, "key": None}


def test_flush_then_new_data_gets_a_new_session(
    make_client: ClientFactory, backend: Backend
) -> None:
    async def relogin(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session.flush()
        session["user"] = "other"
        return {}

    client = make_client({"/seed": _seed, "/relogin": relogin, "/dump": _dump})
    old = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
    assert old
    new = cookie_value(client.get("/relogin").headers.get_list("set-cookie"))
    assert new
    assert new != old
    assert client.get("/dump").json()["data"] == {"user": "other"}
    if backend.server:
        assert _stored(client, backend, old) is None
        assert _stored(client, backend, new) is not None


def test_cycle_key_keeps_data_under_a_new_id(make_client: ClientFactory, backend: Backend) -> None:
    async def cycle(request: Request) -> dict[str, Any]:
        session = session_of(request)
        before = session.session_key
        session.cycle_key()
        return {"before": before, "data": dict(session)}

    client = make_client({"/seed": _seed, "/cycle": cycle, "/dump": _dump})
    old = cookie_value(client.get("/seed").headers.get_list("set-cookie"))
    assert old
    response = client.get("/cycle")
    assert response.json()["data"] == {"a": 1, "b": 2}
    new = cookie_value(response.headers.get_list("set-cookie"))
    assert new
    assert new != old
    dumped = client.get("/dump").json()
    assert dumped["data"] == {"a": 1, "b": 2}
    if backend.server:
        assert response.json()["before"] == old
        assert dumped["key"] == new
        assert _stored(client, backend, old) is None
        assert _stored(client, backend, new) is not None
        assert _replay(client, "/dump", old).json() == {"data": {}, "key": None}


def test_test_cookie_across_requests(make_client: ClientFactory) -> None:
    async def set_test(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session.set_test_cookie()
        return {}

    async def check(request: Request) -> dict[str, Any]:
        session = session_of(request)
        worked = session.test_cookie_worked()
        if worked:
            session.delete_test_cookie()
        return {"worked": worked}

    client = make_client({"/set": set_test, "/check": check})
    assert client.get("/check").json() == {"worked": False}
    client.get("/set")
    response = client.get("/check")
    assert response.json() == {"worked": True}
    assert cookie_line(response.headers.get_list("set-cookie")) is not None  # deleted it
    assert client.get("/check").json() == {"worked": False}


def test_is_empty_across_requests(make_client: ClientFactory) -> None:
    async def state(request: Request) -> dict[str, Any]:
        session = session_of(request)
        await session.load()
        return {"empty": session.is_empty()}

    async def store(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["x"] = 1
        return {"empty": session.is_empty()}

    async def flush(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session.flush()
        return {"empty": session.is_empty()}

    client = make_client({"/state": state, "/store": store, "/flush": flush})
    assert client.get("/state").json() == {"empty": True}
    assert client.get("/store").json() == {"empty": False}
    assert client.get("/state").json() == {"empty": False}
    assert client.get("/flush").json() == {"empty": True}
    assert client.get("/state").json() == {"empty": True}


def test_async_mirrors_through_the_middleware(make_client: ClientFactory, backend: Backend) -> None:
    async def mirrors(request: Request) -> dict[str, Any]:
        session = session_of(request)
        assert await session.aget("a") == 1
        await session.aset("c", 3)
        assert await session.asetdefault("c", 99) == 3
        assert await session.asetdefault("d", 4) == 4
        assert await session.apop("b") == 2
        assert await session.apop("b", None) is None
        await session.aupdate({"e": 5}, f=6)
        assert await session.ahas_key("e")
        return {
            "keys": await session.akeys(),
            "values": await session.avalues(),
            "items": await session.aitems(),
        }

    async def acycle(request: Request) -> dict[str, Any]:
        session = session_of(request)
        await session.acycle_key()
        return {}

    async def aflush(request: Request) -> dict[str, Any]:
        session = session_of(request)
        await session.aflush()
        return {}

    # Server sessions are loaded on demand here: the a* methods load them.
    client = make_client(
        {"/seed": _seed, "/mirrors": mirrors, "/acycle": acycle, "/aflush": aflush, "/dump": _dump},
        autoload=False,
    )
    client.get("/seed")
    backend.store.reset()
    result = client.get("/mirrors").json()
    if backend.server:
        assert backend.counting.calls["read"] == 1  # loaded once, by the first a* call
    else:
        assert backend.cookies.opens == 1
    expected = {"a": 1, "c": 3, "d": 4, "e": 5, "f": 6}
    assert result == {
        "keys": list(expected),
        "values": list(expected.values()),
        "items": [list(item) for item in expected.items()],
    }
    assert client.get("/dump").json()["data"] == expected

    before = client.cookies.get("session")
    client.get("/acycle")
    assert client.cookies.get("session") != before
    assert client.get("/dump").json()["data"] == expected

    client.get("/aflush")
    assert client.get("/dump").json() == {"data": {}, "key": None}


def test_nested_change_is_saved_only_when_marked(make_client: ClientFactory) -> None:
    async def start(request: Request) -> dict[str, Any]:
        request.session["cart"] = [1]
        return {}

    async def mutate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["cart"].append(2)
        if request.query_params.get("mark"):
            session.mark_modified()
        return {}

    client = make_client({"/start": start, "/mutate": mutate, "/dump": _dump})
    client.get("/start")
    client.get("/mutate")
    assert client.get("/dump").json()["data"] == {"cart": [1]}
    client.get("/mutate?mark=1")
    assert client.get("/dump").json()["data"] == {"cart": [1, 2]}


@pytest.mark.parametrize("backend", ["memory"], indirect=True)  # a cookie is rewritten whole
@pytest.mark.parametrize("frames", [1, 2, 3])
def test_an_unmarked_nested_change_is_not_saved_whatever_the_record_history(
    make_client: ClientFactory, frames: int
) -> None:
    # A tracked change of another key in the same request used to save the
    # untracked nested one too once the record had two frames or more (the
    # compacted snapshot was taken from the loaded dicts, which share nested
    # values with the session).
    async def start(request: Request) -> dict[str, Any]:
        request.session["cart"] = [1]
        return {}

    async def pad(request: Request) -> dict[str, Any]:
        request.session["pad"] = request.session.get("pad", 0) + 1
        return {}

    async def mutate(request: Request) -> dict[str, Any]:
        session = session_of(request)
        session["cart"].append(2)  # not tracked, not marked
        session["x"] = 1  # tracked
        return {}

    client = make_client({"/start": start, "/pad": pad, "/mutate": mutate, "/dump": _dump})
    client.get("/start")
    for _ in range(frames - 1):
        client.get("/pad")
    client.get("/mutate")
    data = client.get("/dump").json()["data"]
    assert data["cart"] == [1]
    assert data["x"] == 1


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "a" * 43,
        "%%%%",
        "null",
        "x" * 5000,
        "\u00e9t\u00e9",
    ],
    ids=["word", "empty", "id-shaped", "percent", "null", "huge", "latin1"],
)
def test_cookie_that_does_not_verify_is_an_empty_session(
    make_client: ClientFactory, value: str
) -> None:
    client = make_client({"/dump": _dump, "/seed": _seed})
    client.cookies.clear()
    response = client.get("/dump", headers={b"cookie": f"session={value}".encode("latin-1")})
    assert response.status_code == 200
    assert response.json() == {"data": {}, "key": None}


def test_unknown_session_id_is_an_empty_session(make_client: ClientFactory) -> None:
    client = make_client({"/dump": _dump})
    assert _replay(client, "/dump", new_session_id()).json() == {"data": {}, "key": None}


# -- session_of: the session typed as Session --------------------------------------


def test_session_of_gives_the_typed_session_of_requests_and_websockets() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket

    from asgi_sessions import SessionMiddleware, session_of

    async def view(request: Request) -> JSONResponse:
        session = session_of(request)
        assert session is request.session
        assert session is session_of(request.scope)
        assert session is session_of(request.session)
        await session.aset("n", 1)
        return JSONResponse({"type": type(session).__name__})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"n": await session_of(websocket).aget("n")})
        await websocket.close()

    app = Starlette(routes=[Route("/", view), WebSocketRoute("/ws", socket)])
    app.add_middleware(SessionMiddleware, secret_key="s" * 40)
    with TestClient(app) as client:
        assert client.get("/").json() == {"type": "Session"}
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"n": 1}


def test_session_of_without_the_middleware_says_what_is_missing() -> None:
    from asgi_sessions import session_of
    from asgi_sessions.errors import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="SessionMiddleware"):
        session_of({"type": "http"})
