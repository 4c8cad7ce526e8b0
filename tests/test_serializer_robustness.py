"""Serializers that decode differently from JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_sessions import SessionMiddleware
from asgi_sessions.stores import MemoryStore

SECRET = "s" * 43


class _TupleJSON:
    """JSON whose arrays decode as tuples, like msgpack's ``use_list=False``."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        def tuples(value: Any) -> Any:
            if isinstance(value, list):
                return tuple(tuples(item) for item in value)
            if isinstance(value, dict):
                return {key: tuples(item) for key, item in value.items()}
            return value

        return tuples(json.loads(data))


async def _set(request: Request) -> JSONResponse:
    request.session.update(user="alice", flash="welcome")
    return JSONResponse({})


async def _pop(request: Request) -> JSONResponse:
    return JSONResponse({"flash": request.session.pop("flash", None)})


async def _show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


def _app(store: MemoryStore, serializer: Any = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/set", _set),
            Route("/pop", _pop),
            Route("/show", _show),
        ]
    )
    options: dict[str, Any] = {} if serializer is None else {"serializer": serializer}
    app.add_middleware(SessionMiddleware, secret_key=SECRET, store=store, **options)
    return app


def test_a_removal_decoded_as_a_tuple_keeps_the_session() -> None:
    with TestClient(_app(MemoryStore(), _TupleJSON())) as client:
        client.get("/set")
        assert client.get("/pop").json() == {"flash": "welcome"}
        assert client.get("/show").json() == {"user": "alice"}
