"""A small shop with a login, on FastAPI and server-side sessions.

Run it from the repository root (after ``make venv``)::

    .venv/bin/uvicorn examples.fastapi_login.app:app

and open http://127.0.0.1:8000. Pages (server-rendered HTML, no JavaScript):

- ``/``         the catalogue: add items to the cart (works logged out too)
- ``/cart``     the cart; the cart summary is also on every page
- ``/login``    log in as a demo user (alice / wonderland, bob / builder)
- ``/profile``  private data of the logged-in user; logged out: to /login
- ``/logout``   (POST) ends the session: record deleted, cookie removed
- ``/logout-others`` (POST, on the profile page) signs out every other device
  of this user: "log out everywhere", which only a server-side store can do

Sessions live server-side, in the store named by ``SESSION_STORE_URL``:
SQLite by default (``sqlite+aiosqlite:///…/fastapi_login.db``, next to this
file) or Redis (``redis://127.0.0.1:6379/0``); ``cookie`` keeps them in the
encrypted cookie instead (no server-side revocation then). The browser only
ever holds a random session id, in an HttpOnly, SameSite=Lax cookie.

``SESSION_SECRET_KEY`` is the secret (used by the ``cookie`` store); without
it a marked, public development key is used and a warning is logged.
Every page shows session data, so every page is sent with
``Cache-Control: no-store``: after logout, the back button re-fetches the
page from the server instead of showing a private copy from the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from asgi_sessions import Session, SessionMiddleware
from asgi_sessions.auth import login, logout, logout_everywhere, user_of
from asgi_sessions.errors import SessionStoreUnavailable, UnsupportedOperation
from asgi_sessions.integrations.fastapi import SessionDep
from asgi_sessions.stores import SessionStore, store_from_url

logger = logging.getLogger(__name__)

DEFAULT_STORE_URL = f"sqlite+aiosqlite:///{Path(__file__).resolve().parent / 'fastapi_login.db'}"

# DEVELOPMENT ONLY: this key is public (it is in the source). Set
# SESSION_SECRET_KEY (python -m asgi_sessions keygen) anywhere that matters.
DEV_SECRET_KEY = "dev-only-INSECURE-fastapi-login-example-secret-key"

PRIVATE = {"Cache-Control": "no-store"}
"""Sent with every page: each one shows the cart, and some show private data."""


# -- users -------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    username: str
    name: str
    email: str
    address: str
    password_hash: str  # scrypt$N$r$p$salt-hex$hash-hex


# Demo users. The passwords (wonderland, builder) are only stored as scrypt
# hashes; a real app keeps these in its database.
USERS = {
    "alice": User(
        "alice",
        "Alice Liddell",
        "alice@example.org",
        "1 Rabbit Hole, Oxford",
        "scrypt$16384$8$1$8a5779cd7ce84d3dca500f694c70d440$"
        "67da4b55e7173c31dd65d96129177aedc163f536339e4148ca3220ed767f7ad2",
    ),
    "bob": User(
        "bob",
        "Bob Builder",
        "bob@example.org",
        "7 Scaffold Lane, Bobsville",
        "scrypt$16384$8$1$d696194c69fd06a4f4d437c75dda41fa$"
        "9b4c3d5d022301e115c5e3e91a84c135f01938184f0ae3f5aa916c96af840e74",
    ),
}

# Checked when the username is unknown, so that a wrong username costs the
# same time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = USERS["alice"].password_hash


def hash_password(password: str, salt: bytes, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, _digest = stored.split("$")
    candidate = hash_password(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate.encode(), stored.encode())


def authenticate(username: str, password: str) -> User | None:
    user = USERS.get(username)
    matches = check_password(password, user.password_hash if user else _DUMMY_HASH)
    return user if user is not None and matches else None


# -- the shop ----------------------------------------------------------------

CATALOGUE = {
    "tea": "Earl Grey tea",
    "scones": "Scones",
    "jam": "Strawberry jam",
    "cream": "Clotted cream",
}
MAX_QUANTITY = 99


def cart_of(session: Session) -> dict[str, int]:
    cart = session.get("cart")
    return dict(cart) if isinstance(cart, dict) else {}


# -- HTML --------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Tea shop</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
header {{ display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #ddd;
          padding-bottom: .5rem; }}
header form {{ margin: 0; }} .who {{ margin-left: auto; }} .error {{ color: #b00; }}
#cart-summary {{ background: #f4f4f4; padding: .5rem .75rem; margin: 1rem 0; }}
</style></head><body>
<header><a href="/">Shop</a><a href="/cart">Cart</a>{account}</header>
<p id="cart-summary">{cart}</p>
<h1>{title}</h1>
{body}
</body></html>"""


def account_links(user: User | None) -> str:
    if user is None:
        return '<span class="who"><a href="/login">Log in</a></span>'
    return (
        f'<a href="/profile">Profile</a><span class="who">Signed in as '
        f"<strong>{html.escape(user.name)}</strong></span>"
        '<form method="post" action="/logout"><button>Log out</button></form>'
    )


def cart_summary(cart: dict[str, int]) -> str:
    if not cart:
        return "Your cart is empty."
    items = ", ".join(
        f"{quantity} &times; {html.escape(CATALOGUE[item])}"
        for item, quantity in cart.items()
        if item in CATALOGUE
    )
    return f"Cart ({sum(cart.values())}): {items}"


def page(
    session: Session,
    user: User | None,
    title: str,
    body: str,
    status_code: int = 200,
) -> HTMLResponse:
    text = PAGE.format(
        title=html.escape(title),
        account=account_links(user),
        cart=cart_summary(cart_of(session)),
        body=body,
    )
    return HTMLResponse(text, status_code, headers=PRIVATE)


def add_button(item: str, back: str) -> str:
    return (
        f'<form method="post" action="/cart/add"><input type="hidden" name="item" value="{item}">'
        f'<input type="hidden" name="next" value="{html.escape(back)}">'
        f"<button>Add {html.escape(CATALOGUE[item])}</button></form>"
    )


# -- helpers -----------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (no multipart parser needed)."""
    body = (await request.body())[:10_000].decode("utf-8", "replace")
    return dict(parse_qsl(body))


def local_path(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect)."""
    if (
        not target
        or not target.isprintable()  # browsers drop tabs and newlines: "/\t/evil.example"
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
    ):
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=PRIVATE)


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site (defence in depth next to SameSite=Lax)."""
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "cross-site" or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise HTTPException(403, "Cross-site form posts are refused.")


SameOrigin = Depends(same_origin)


async def current_user(session: Session) -> User | None:
    username = await user_of(session)
    return USERS.get(username) if isinstance(username, str) else None


# -- the app -----------------------------------------------------------------


def create_app(
    store: SessionStore | str | None = None,
    *,
    secret_key: str | None = None,
    https_only: bool | None = None,
) -> FastAPI:
    """The shop, with sessions in ``store`` (a store or URL; default: the environment).

    The app owns the store and closes it when it shuts down.
    """
    if store is None:
        store = os.environ.get("SESSION_STORE_URL") or DEFAULT_STORE_URL
    if secret_key is None:
        secret_key = os.environ.get("SESSION_SECRET_KEY")
        if not secret_key:
            logger.warning("SESSION_SECRET_KEY is not set: using the public development key")
            secret_key = DEV_SECRET_KEY
    if https_only is None:
        https_only = os.environ.get("SESSION_HTTPS_ONLY") == "1"
    if isinstance(store, str):
        store = None if store == "cookie" else store_from_url(store)
    owned = store

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned is not None:
            await owned.close()

    app = FastAPI(title="Tea shop (asgi_sessions example)", lifespan=lifespan)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        store=store,
        max_age=12 * 60 * 60,
        https_only=https_only,
        idle_timeout=30 * 60,  # logged out after 30 minutes without a request
        absolute_timeout=12 * 60 * 60,  # and after 12 hours whatever happens
        autoload=False,  # pages load it through SessionDep; nothing else pays a read
    )

    @app.exception_handler(SessionStoreUnavailable)
    async def store_down(request: Request, exc: SessionStoreUnavailable) -> Response:
        return HTMLResponse(
            "<!doctype html><title>Unavailable</title><p>Sessions are unavailable right now; "
            "please try again in a moment.</p>",
            503,
            headers={**PRIVATE, "Retry-After": "5"},
        )

    @app.get("/", response_class=HTMLResponse)
    async def shop(session: SessionDep) -> Response:
        user = await current_user(session)
        rows = "".join(f"<li>{add_button(item, '/')}</li>" for item in CATALOGUE)
        return page(session, user, "Shop", f"<ul>{rows}</ul>")

    @app.get("/cart", response_class=HTMLResponse)
    async def cart(session: SessionDep) -> Response:
        user = await current_user(session)
        contents = cart_of(session)
        if contents:
            rows = "".join(
                f"<li>{quantity} &times; {html.escape(CATALOGUE[item])}</li>"
                for item, quantity in contents.items()
                if item in CATALOGUE
            )
            body = (
                f"<ul id='cart'>{rows}</ul>"
                '<form method="post" action="/cart/clear"><button>Empty the cart</button></form>'
            )
        else:
            body = '<p>Nothing here yet: <a href="/">go shopping</a>.</p>'
        return page(session, user, "Your cart", body)

    @app.post("/cart/add", dependencies=[SameOrigin])
    async def add_to_cart(request: Request, session: SessionDep) -> Response:
        form = await read_form(request)
        item = form.get("item", "")
        if item not in CATALOGUE:
            user = await current_user(session)
            return page(session, user, "Unknown item", "<p>No such item.</p>", 400)
        contents = cart_of(session)
        contents[item] = min(contents.get(item, 0) + 1, MAX_QUANTITY)
        session["cart"] = contents  # reassigned: nested changes are not tracked
        return see_other(local_path(form.get("next"), "/cart"))

    @app.post("/cart/clear", dependencies=[SameOrigin])
    async def clear_cart(session: SessionDep) -> Response:
        session.pop("cart", None)
        return see_other("/cart")

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, session: SessionDep) -> Response:
        user = await current_user(session)
        target = local_path(request.query_params.get("next"), "/profile")
        return page(session, user, "Log in", login_body(user, target))

    @app.post("/login", dependencies=[SameOrigin])
    async def do_login(request: Request, session: SessionDep) -> Response:
        form = await read_form(request)
        target = local_path(form.get("next"), "/profile")
        username = form.get("username", "").strip().lower()
        user = authenticate(username, form.get("password", ""))
        if user is None:
            current = await current_user(session)
            body = '<p class="error">Wrong username or password.</p>' + login_body(
                current, target, username
            )
            return page(session, current, "Log in", body, 401)
        # A new session id (no fixation); an anonymous cart is kept.
        await login(session, user.username)
        return see_other(target)

    @app.get("/profile", response_class=HTMLResponse)
    async def profile(session: SessionDep, others: str | None = None) -> Response:
        user = await current_user(session)
        if user is None:
            return see_other("/login?next=" + quote("/profile", safe=""))
        body = f"""<dl id="profile">
<dt>Name</dt><dd>{html.escape(user.name)}</dd>
<dt>Username</dt><dd>{html.escape(user.username)}</dd>
<dt>E-mail</dt><dd>{html.escape(user.email)}</dd>
<dt>Delivery address</dt><dd>{html.escape(user.address)}</dd>
</dl>
<form method="post" action="/logout-others"><button>Sign out all other devices</button></form>"""
        if others == "unsupported":
            body += "<p id=others>Cookie sessions cannot be ended from the server.</p>"
        elif others is not None and others.isdigit():
            body += f"<p id=others>Signed out {int(others)} other session(s).</p>"
        return page(session, user, f"Hello, {user.name}", body)

    @app.post("/logout-others", dependencies=[SameOrigin])
    async def logout_others(session: SessionDep) -> Response:
        # Every other session of this user ends; this one stays, under a new id.
        try:
            ended = await logout_everywhere(session, keep_current=True)
        except UnsupportedOperation:  # the `cookie` store: nothing on the server to end
            return see_other("/profile?others=unsupported")
        return see_other(f"/profile?others={ended}")

    @app.post("/logout", dependencies=[SameOrigin])
    async def do_logout(session: SessionDep) -> Response:
        await logout(session)  # the server-side record is deleted, the cookie removed
        return see_other("/login")

    return app


def login_body(user: User | None, target: str, username: str = "") -> str:
    signed_in = (
        f"<p>You are signed in as {html.escape(user.name)}; log in again to switch users.</p>"
        if user
        else ""
    )
    return f"""{signed_in}<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(target)}">
<p><label>Username <input name="username" value="{html.escape(username)}"
   autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password"
   autocomplete="current-password" required></label></p>
<p><button>Log in</button></p></form>
<p>Demo users: <code>alice</code> / <code>wonderland</code>,
<code>bob</code> / <code>builder</code>.</p>"""


app = create_app()
