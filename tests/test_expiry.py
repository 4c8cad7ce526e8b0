"""The expiry matrix of the session API, and that every expiry is enforced.

``set_expiry`` with an int, ``0``, ``None``, a ``timedelta``, a ``datetime``
and a negative value; ``get_expiry_age``, ``get_expiry_date`` and
``get_expire_at_browser_close``; the ``Max-Age`` each one puts on the cookie;
and proof on the server side that an expired session comes back empty even
when the client keeps sending its cookie: with short real waits, with
negative expiry, and with records forged in the past (absolute and idle
timeouts) using the real cipher and the real store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from asgi_sessions import Session, session_of
from asgi_sessions._record import COOKIE_HEAD, decode_frames, encode_frame, frame_bytes, pack_cookie
from asgi_sessions.crypto import new_session_id, store_key
from asgi_sessions.serializers import JSONSerializer
from tests.instrumented import (
    Backend,
    ClientFactory,
    Handler,
    cookie_line,
    cookie_value,
    in_loop,
    make_backend,
    max_age_of,
    session_app,
)

DAY = 86_400
TWO_WEEKS = 14 * DAY
JSON = JSONSerializer()


def _in(seconds: int) -> datetime:
    """An aware moment ``seconds`` from now, on a whole second."""
    return datetime.fromtimestamp(int(time.time()) + seconds, UTC)


# -- the matrix on a standalone session (middleware default: max_age of two weeks) --


def test_default_expiry() -> None:
    session = Session()
    assert session.get_expiry_age() == TWO_WEEKS
    expected = datetime.now(UTC) + timedelta(seconds=TWO_WEEKS)
    assert abs((session.get_expiry_date() - expected).total_seconds()) <= 1
    assert not session.get_expire_at_browser_close()


@pytest.mark.parametrize(
    "value", [10, 10.0, timedelta(seconds=10)], ids=["int", "float", "timedelta"]
)
def test_custom_expiry_relative(value: Any) -> None:
    session = Session()
    session.set_expiry(value)
    assert session.modified
    assert session.get_expiry_age() == 10
    expected = datetime.now(UTC) + timedelta(seconds=10)
    assert abs((session.get_expiry_date() - expected).total_seconds()) <= 1
    assert not session.get_expire_at_browser_close()


def test_custom_expiry_datetime() -> None:
    moment = _in(10)
    session = Session()
    session.set_expiry(moment)
    assert 9 <= session.get_expiry_age() <= 10
    assert session.get_expiry_date() == moment
    assert not session.get_expire_at_browser_close()


def test_naive_datetime_means_utc() -> None:
    session = Session()
    session.set_expiry(_in(10).replace(tzinfo=None))
    assert 9 <= session.get_expiry_age() <= 10


def test_custom_expiry_reset() -> None:
    session = Session()
    session.set_expiry(10)
    session.set_expiry(None)
    assert session.get_expiry_age() == TWO_WEEKS
    assert not session.get_expire_at_browser_close()


def test_expire_at_browser_close() -> None:
    session = Session()
    session.set_expiry(0)
    assert session.get_expire_at_browser_close()
    # The server still keeps it no longer than the cookie age (Django's rule).
    assert session.get_expiry_age() == TWO_WEEKS
    session.set_expiry(10)
    assert not session.get_expire_at_browser_close()
    session.set_expiry(None)
    assert not session.get_expire_at_browser_close()


def test_negative_expiry_is_in_the_past() -> None:
    session = Session()
    session.set_expiry(-10)
    assert session.get_expiry_age() == -10
    assert session.get_expiry_date() < datetime.now(UTC)


def test_expiry_arithmetic_with_explicit_arguments() -> None:
    session = Session()
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=1)
    assert session.get_expiry_age(modification=start, expiry=end) == 3600
    assert session.get_expiry_age(modification=start, expiry=600) == 600
    assert session.get_expiry_age(modification=start, expiry=None) == TWO_WEEKS
    assert session.get_expiry_date(modification=start, expiry=600) == start + timedelta(seconds=600)
    assert session.get_expiry_date(modification=start, expiry=end) == end
    assert session.get_expiry_date(modification=start, expiry=None) == start + timedelta(
        seconds=TWO_WEEKS
    )


# -- through the middleware, cookie store and MemoryStore ----------------------------


EXPIRY_VALUES: dict[str, Callable[[], Any]] = {
    "none": lambda: None,
    "int": lambda: 300,
    "timedelta": lambda: timedelta(seconds=300),
    "datetime": lambda: _in(600),
    "zero": lambda: 0,
    "negative": lambda: -5,
    "one": lambda: 1,
    "one-timedelta": lambda: timedelta(seconds=1),
    "one-datetime": lambda: _in(1),
    "sixty": lambda: 60,
    "ninety-years": lambda: timedelta(days=90 * 365),
    "huge": lambda: 10**30,
    "before-1970": lambda: datetime(1960, 1, 1, tzinfo=UTC),
    "far-negative": lambda: -(10**10),
}


async def _expire(request: Request) -> dict[str, Any]:
    session = session_of(request)
    session["user"] = "alice"
    session.set_expiry(EXPIRY_VALUES[request.query_params["kind"]]())
    return {}


async def _dump(request: Request) -> dict[str, Any]:
    session = session_of(request)
    await session.load()
    return {
        "data": dict(session),
        "age": session.get_expiry_age(),
        "date": session.get_expiry_date().timestamp(),
        "browser_close": session.get_expire_at_browser_close(),
    }


async def _touch(request: Request) -> dict[str, Any]:
    session = session_of(request)
    session["n"] = session.get("n", 0) + 1
    return {}


ROUTES: dict[str, Handler] = {"/expire": _expire, "/dump": _dump, "/touch": _touch}


def _replay(client: TestClient, value: str) -> dict[str, Any]:
    client.cookies.clear()
    result: dict[str, Any] = client.get("/dump", headers={"cookie": f"session={value}"}).json()
    return result


@pytest.mark.parametrize(
    ("kind", "max_age"),
    [
        ("none", 3600),
        ("int", 300),
        ("timedelta", 300),
        ("datetime", 600),
        ("zero", None),
    ],
)
def test_max_age_for_each_kind_of_expiry(
    make_client: ClientFactory, kind: str, max_age: int | None
) -> None:
    client = make_client(ROUTES, max_age=3600)
    line = cookie_line(client.get(f"/expire?kind={kind}").headers.get_list("set-cookie"))
    assert line is not None
    if max_age is None:
        assert "max-age" not in line.lower()
    elif kind == "datetime":
        age = max_age_of(line)
        assert age is not None
        assert max_age - 2 <= age <= max_age
    else:
        assert max_age_of(line) == max_age


def test_max_age_none_makes_browser_session_cookies(make_client: ClientFactory) -> None:
    client = make_client(ROUTES, max_age=None)
    line = cookie_line(client.get("/expire?kind=none").headers.get_list("set-cookie"))
    assert line is not None
    assert "max-age" not in line.lower()
    assert client.get("/dump").json()["browser_close"] is True
    line = cookie_line(client.get("/expire?kind=int").headers.get_list("set-cookie"))
    assert line is not None
    assert max_age_of(line) == 300
    assert client.get("/dump").json()["browser_close"] is False


@pytest.mark.parametrize("kind", ["int", "timedelta", "datetime", "zero"])
def test_custom_expiry_is_kept_across_requests(make_client: ClientFactory, kind: str) -> None:
    client = make_client(ROUTES, max_age=3600)
    client.get(f"/expire?kind={kind}")
    dumped = client.get("/dump").json()
    assert dumped["data"] == {"user": "alice"}
    assert dumped["browser_close"] is (kind == "zero")
    if kind == "datetime":
        assert 598 <= dumped["age"] <= 600
    elif kind != "zero":
        assert dumped["age"] == 300
    # A later change without set_expiry keeps the custom expiry on the cookie.
    line = cookie_line(client.get("/touch").headers.get_list("set-cookie"))
    assert line is not None
    age = max_age_of(line)
    if kind == "zero":
        assert age is None
    elif kind == "datetime":
        assert age is not None
        assert 598 <= age <= 600
    else:
        assert age == 300


def test_set_expiry_none_goes_back_to_max_age(make_client: ClientFactory) -> None:
    client = make_client(ROUTES, max_age=3600)
    client.get("/expire?kind=int")
    line = cookie_line(client.get("/expire?kind=none").headers.get_list("set-cookie"))
    assert line is not None
    assert max_age_of(line) == 3600
    assert client.get("/dump").json()["age"] == 3600


def test_negative_expiry_is_enforced(make_client: ClientFactory) -> None:
    client = make_client(ROUTES, max_age=3600)
    response = client.get("/expire?kind=negative")
    line = cookie_line(response.headers.get_list("set-cookie"))
    assert line is not None
    age = max_age_of(line)
    # The browser is told to drop it at once...
    assert (age is not None and age <= 0) or "expires=Thu, 01 Jan 1970" in line
    # ...and a client that keeps it anyway gets an empty session.
    value = cookie_value([line])
    assert value
    assert _replay(client, value)["data"] == {}


@pytest.mark.parametrize("kind", ["ninety-years", "huge"])
def test_expiries_beyond_2106_still_save(make_client: ClientFactory, kind: str) -> None:
    # The cookie head holds times up to 2**32 - 1: later ones used to fail
    # the save with a 500; now the session ends in 2106 at the latest.
    client = make_client(ROUTES, max_age=3600)
    response = client.get(f"/expire?kind={kind}")
    assert response.status_code == 200
    dumped = client.get("/dump").json()
    assert dumped["data"] == {"user": "alice"}
    assert dumped["date"] > time.time() + 70 * 365 * DAY


def test_a_max_age_beyond_2106_still_saves(make_client: ClientFactory) -> None:
    client = make_client(ROUTES, max_age=100 * 365 * DAY)
    assert client.get("/touch").status_code == 200
    assert client.get("/touch").status_code == 200
    assert client.get("/dump").json()["data"] == {"n": 2}


@pytest.mark.parametrize("kind", ["before-1970", "far-negative"])
def test_expiries_before_1970_are_in_the_past(make_client: ClientFactory, kind: str) -> None:
    client = make_client(ROUTES, max_age=3600)
    response = client.get(f"/expire?kind={kind}")
    assert response.status_code == 200
    line = cookie_line(response.headers.get_list("set-cookie"))
    if line is not None:  # a cookie session: told to go at once
        age = max_age_of(line)
        assert age is not None
        assert age <= 0
        value = cookie_value([line])
        assert value
        assert _replay(client, value)["data"] == {}
    assert client.get("/dump").json()["data"] == {}


def test_negative_expiry_on_an_existing_session(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = make_client(ROUTES, max_age=3600)
    value = cookie_value(client.get("/expire?kind=int").headers.get_list("set-cookie"))
    assert value
    expired = cookie_value(client.get("/expire?kind=negative").headers.get_list("set-cookie"))
    assert expired
    assert _replay(client, expired)["data"] == {}
    if backend.server:
        # Same id: the record itself is gone, not only the cookie.
        assert expired == value
        assert _replay(client, value)["data"] == {}
        assert in_loop(client, backend.counting.inner.read, store_key(value)) is None


def test_expired_sessions_come_back_empty_in_real_time(
    make_client: ClientFactory,
) -> None:
    """One short wait covers every relative and absolute kind of expiry."""
    client = make_client(ROUTES, max_age=3600)
    short_max_age = make_client(ROUTES, max_age=1)
    values: dict[str, str] = {}
    # Expiry is kept in whole seconds: start early in a second, so that every
    # session below is created, and checked alive, within that same second.
    if time.time() % 1 > 0.5:
        time.sleep(1.01 - time.time() % 1)
    second = int(time.time())
    for kind in ("one", "one-timedelta", "one-datetime", "sixty"):
        client.cookies.clear()
        value = cookie_value(client.get(f"/expire?kind={kind}").headers.get_list("set-cookie"))
        assert value
        values[kind] = value
    value = cookie_value(short_max_age.get("/expire?kind=none").headers.get_list("set-cookie"))
    assert value
    values["max_age"] = value
    for value in values.values():
        assert _replay(client, value)["data"] == {"user": "alice"}
    assert int(time.time()) == second, "the machine is too slow for this test"

    time.sleep(second + 1.2 - time.time())

    for kind, value in values.items():
        expected = {"user": "alice"} if kind == "sixty" else {}
        assert _replay(client, value)["data"] == expected, kind


# -- timeouts, with sessions forged in the past through the real cipher and store ---


def _forge(
    client: TestClient,
    backend: Backend,
    data: dict[str, Any],
    *,
    created: int,
    issued: int,
    expires: int | None,
) -> str:
    """A cookie value for a session saved at ``issued`` and created at ``created``."""
    if not backend.server:
        payload = pack_cookie(
            JSON.dumps(data), created=created, issued=issued, expires=expires, expiry=None
        )
        return backend.cookies.seal(payload, "session")
    session_id = new_session_id()
    blob = frame_bytes(
        JSON,
        encode_frame(created=created, issued=issued, expires=expires, expiry=None, snapshot=data),
    )
    created_ok = in_loop(client, backend.counting.inner.create, store_key(session_id), blob, 3600)
    assert created_ok
    return session_id


def _created_of(client: TestClient, backend: Backend, value: str) -> int:
    """The creation time recorded in the session behind a cookie value."""
    if not backend.server:
        opened = backend.cookies.open(value, "session", None)
        assert opened is not None
        created: int = COOKIE_HEAD.unpack_from(opened[0])[0]
        return created
    blob = in_loop(client, backend.counting.inner.read, store_key(value))
    assert blob is not None
    return decode_frames(JSON, blob).created


def test_lowering_max_age_ends_sessions_saved_under_the_old_one(
    make_client: ClientFactory, backend: Backend
) -> None:
    # Saved 120 s ago under max_age=3600; the app now says max_age=60. The
    # sealed expiry alone kept them for the rest of the hour (Starlette's
    # middleware refuses them, counting from the save with today's max_age).
    client = make_client(ROUTES, max_age=60)
    now = int(time.time())
    old = _forge(
        client, backend, {"user": "a"}, created=now - 120, issued=now - 120, expires=now + 3480
    )
    assert _replay(client, old)["data"] == {}
    recent = _forge(
        client, backend, {"user": "b"}, created=now - 120, issued=now - 30, expires=now + 3570
    )
    assert _replay(client, recent)["data"] == {"user": "b"}


def test_raising_max_age_keeps_the_sealed_expiry(
    make_client: ClientFactory, backend: Backend
) -> None:
    client = make_client(ROUTES, max_age=7200)
    now = int(time.time())
    ended = _forge(
        client, backend, {"user": "a"}, created=now - 120, issued=now - 120, expires=now - 1
    )
    assert _replay(client, ended)["data"] == {}


def test_absolute_timeout_is_enforced(make_client: ClientFactory, backend: Backend) -> None:
    client = make_client(ROUTES, max_age=3600, absolute_timeout=60)
    now = int(time.time())
    fresh = _forge(client, backend, {"user": "a"}, created=now - 50, issued=now, expires=now + 3600)
    stale = _forge(client, backend, {"user": "b"}, created=now - 61, issued=now, expires=now + 3600)
    assert _replay(client, fresh)["data"] == {"user": "a"}
    assert _replay(client, stale)["data"] == {}


def test_absolute_timeout_survives_cycle_key(make_client: ClientFactory, backend: Backend) -> None:
    async def cycle(request: Request) -> dict[str, Any]:
        session_of(request).cycle_key()
        return {}

    client = make_client({**ROUTES, "/cycle": cycle}, max_age=3600, absolute_timeout=60)
    now = int(time.time())
    created = now - 50
    old = _forge(client, backend, {"user": "a"}, created=created, issued=now, expires=now + 3600)
    client.cookies.clear()
    response = client.get("/cycle", headers={"cookie": f"session={old}"})
    line = cookie_line(response.headers.get_list("set-cookie"))
    assert line is not None
    new = cookie_value([line])
    assert new
    assert new != old
    # The cookie lives only until the absolute limit, counted from the first creation.
    age = max_age_of(line)
    assert age is not None
    assert 8 <= age <= 10
    assert _created_of(client, backend, new) == created
    assert _replay(client, new)["data"] == {"user": "a"}


@pytest.mark.parametrize("backend", ["cookie"], indirect=True)
def test_idle_timeout_on_cookie_sessions(make_client: ClientFactory, backend: Backend) -> None:
    client = make_client(ROUTES, max_age=3600, idle_timeout=5)
    now = int(time.time())
    idle = _forge(client, backend, {"user": "a"}, created=now - 10, issued=now - 10, expires=None)
    active = _forge(client, backend, {"user": "b"}, created=now - 10, issued=now - 3, expires=None)
    assert _replay(client, idle)["data"] == {}
    client.cookies.clear()
    response = client.get("/dump", headers={"cookie": f"session={active}"})
    assert response.json()["data"] == {"user": "b"}
    # Rolling expiry: a request that loads it re-issues it with a fresh issue time.
    renewed = cookie_value(response.headers.get_list("set-cookie"))
    assert renewed
    assert renewed != active
    assert _replay(client, renewed)["data"] == {"user": "b"}


def test_idle_timeout_on_memory_store_in_real_time() -> None:
    """A load touches the record (keeping it alive); a session not loaded expires."""
    backend = make_backend("memory")
    app = session_app(ROUTES, store=backend.store, idle_timeout=1)
    with TestClient(app) as client:
        kept = cookie_value(client.get("/touch").headers.get_list("set-cookie"))
        client.cookies.clear()
        left = cookie_value(client.get("/touch").headers.get_list("set-cookie"))
        assert kept
        assert left
        time.sleep(0.6)
        assert _replay(client, kept)["data"] == {"n": 1}  # touched until ~1.6 s
        assert backend.counting.calls["touch"] == 1
        time.sleep(0.6)
        assert _replay(client, kept)["data"] == {"n": 1}  # alive only thanks to the touch
        assert _replay(client, left)["data"] == {}  # never loaded since: expired
        time.sleep(1.2)
        assert _replay(client, kept)["data"] == {}
