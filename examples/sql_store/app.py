"""A shopping cart kept in SQL sessions (SQLite, PostgreSQL or MariaDB), on FastAPI.

The browser holds only a random session id; the cart lives in one table,
keyed by the SHA-256 of that id, so a database dump holds no usable session
token. The store is configured by URL, SQLite by default::

    SESSION_STORE_URL=sqlite+aiosqlite:///./sessions.db            # the default
    SESSION_STORE_URL=postgresql+asyncpg://user@127.0.0.1:5432/app
    SESSION_STORE_URL=mysql+asyncmy://user@127.0.0.1:3306/app       # MariaDB / MySQL

The table is created on first use. Expired rows are removed by
``python -m asgi_sessions clear-expired --store URL`` (run it from cron).
Run the app (from the repository root) with::

    make venv && .venv/bin/uvicorn examples.sql_store.app:app --reload

and open http://127.0.0.1:8000/docs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, Field

from asgi_sessions import Session, SessionMiddleware
from asgi_sessions.integrations.fastapi import SessionDep
from asgi_sessions.stores import SessionStore, SQLStore

STORE_URL = os.environ.get("SESSION_STORE_URL", "sqlite+aiosqlite:///./sessions.db")

# Prices in cents: never floats for money.
CATALOG = {"apple": 50, "pear": 70, "plum": 30, "fig": 120}


class NewItem(BaseModel):
    product: str
    quantity: int = Field(default=1, ge=1, le=99)


class Cart(BaseModel):
    items: dict[str, int]
    total_cents: int


def cart_of(session: Session) -> dict[str, int]:
    return dict(session.get("cart", {}))


def priced(items: dict[str, int]) -> Cart:
    return Cart(items=items, total_cents=sum(CATALOG[p] * n for p, n in items.items()))


router = APIRouter()


# `session: SessionDep` hands each operation the request's session, already
# loaded from the database (one SELECT), so plain `session["cart"]` works.
# Operations that do not ask for it cost no query at all.


@router.get("/cart")
async def show_cart(session: SessionDep) -> Cart:
    return priced(cart_of(session))


@router.post("/cart/items", status_code=201)
async def add_item(item: NewItem, session: SessionDep) -> Cart:
    if item.product not in CATALOG:
        raise HTTPException(404, f"no product {item.product!r}; try one of {sorted(CATALOG)}")
    items = cart_of(session)
    items[item.product] = min(items.get(item.product, 0) + item.quantity, 99)
    # Reassign the key: changes *inside* a stored value are not tracked.
    session["cart"] = items
    return priced(items)


@router.delete("/cart/items/{product}")
async def remove_item(product: str, session: SessionDep) -> Cart:
    items = cart_of(session)
    if items.pop(product, None) is None:
        raise HTTPException(404, f"no {product!r} in the cart")
    session["cart"] = items
    return priced(items)


@router.post("/checkout")
async def checkout(session: SessionDep) -> Cart:
    items = cart_of(session)
    if not items:
        raise HTTPException(400, "the cart is empty")
    order = priced(items)
    del session["cart"]  # one UPDATE; the session (and anything else in it) lives on
    return order


@router.get("/health")
async def health() -> dict[str, str]:
    """No session here: no query, even with a session cookie (autoload=False)."""
    return {"status": "ok"}


def create_app(store: str | SessionStore = STORE_URL) -> FastAPI:
    """The shop on ``store``: an async SQLAlchemy URL, or a ready store."""
    if isinstance(store, str):
        store = SQLStore(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await store.close()  # dispose of the connection pool on shutdown

    app = FastAPI(title="SQL session cart", lifespan=lifespan)
    app.include_router(router)
    app.add_middleware(
        SessionMiddleware,
        store=store,  # secret_key is not needed: the cookie holds only a random id
        max_age=7 * 24 * 60 * 60,  # a cart is kept a week after the last change ...
        idle_timeout=2 * 24 * 60 * 60,  # ... unless nobody came back for two days
        # Load sessions only where an operation asks for them (SessionDep).
        autoload=False,
    )
    return app


app = create_app()
