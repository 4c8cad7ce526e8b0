"""Fixtures shared by the request-level tests of the session API, expiry and I/O.

``backend`` runs a test once with encrypted cookie sessions and once with a
:class:`~asgi_sessions.stores.MemoryStore`, both counted (see
:mod:`tests.instrumented`); ``make_client`` builds entered ``TestClient``
objects over that backend. A module that needs other stores defines its own
``backend`` fixture, which takes precedence over this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.instrumented import Backend, ClientFactory, Handler, make_backend, session_app


@pytest.fixture(params=["cookie", "memory"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """A fresh counted backend: the encrypted cookie store, then a MemoryStore."""
    return make_backend(request.param)


@pytest.fixture
def make_client(backend: Backend) -> Iterator[ClientFactory]:
    """Build a TestClient (one event loop for all its requests) over ``routes``.

    Every client is entered, so its requests share one event loop with the
    store, and closed when the test ends.
    """
    with ExitStack() as stack:

        def make(routes: dict[str, Handler], **middleware: Any) -> TestClient:
            app = session_app(routes, store=backend.store, **middleware)
            return stack.enter_context(TestClient(app))

        yield make
