"""The demo behind `make demo`: what session tutorials teach, on encrypted cookies.

Run it with `make demo` (or `uvicorn examples.demo.app:app`) and open
http://127.0.0.1:8000. Everything lives in the browser's cookie, encrypted:
no database, no Redis. Pages:

- ``/``            what the session holds, and the raw cookie (unreadable)
- ``/set``         set a key to a value (form), ``/delete`` removes one
- ``/visits``      a counter: create on first visit, access, increment
- ``/test-cookie`` Django's test-cookie dance: does this browser keep cookies?
- ``/login``       a login that cycles the session (against session fixation)
- ``/logout``      flush: the session and its cookie are gone

``/set``, ``/delete``, ``/login`` and ``/logout`` refuse requests sent by
another site (403, see ``same_origin``): SameSite=Lax alone does not stop
a forged login.

Set ``DEMO_SECRET_KEY`` to keep sessions across restarts; otherwise a random
key is generated at start-up (and every cookie from a previous run is
simply refused: you get a fresh, empty session, never an error).
"""

from __future__ import annotations

import html
import json
import os
import secrets
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from asgi_sessions import SessionMiddleware, session_of

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY") or secrets.token_urlsafe(32)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asgi_sessions demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }}
pre {{ background: #f4f4f4; padding: .75rem; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; }}
nav a {{ margin-right: 1rem; }} .note {{ color: #555; }} form {{ margin: .5rem 0; }}
</style></head><body>
<nav><a href="/">Home</a><a href="/visits">Visits</a><a href="/test-cookie">Test cookie</a>
<a href="/login">Log in</a><a href="/logout">Log out</a></nav>
<h1>{title}</h1>
{body}
</body></html>"""


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the demo needs no multipart parser)."""
    body = (await request.body())[:10_000].decode("utf-8", "replace")
    return dict(parse_qsl(body))


def same_origin(request: Request) -> None:
    """Refuse (403) a request from another site: first line of the views that change state.

    SameSite=Lax keeps our cookie off a cross-site POST, but that does not stop
    *login* CSRF: another site can post its own name to ``/login`` (or a value
    to ``/set``), and the browser keeps the cookie we answer with. Browsers say
    where a request comes from (``Origin``, ``Sec-Fetch-Site``): a modern
    browser posting from another site sends at least one of them. A request
    with neither (curl, a script) is not a victim's browser, so it is let
    through. Behind a proxy that rewrites ``Host``, compare ``Origin`` with
    your public origin instead.
    """
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "cross-site" or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise HTTPException(403, "Cross-site requests are refused.")


async def home(request: Request) -> Response:
    session = request.session
    user = session.get("user")
    raw_cookie = request.cookies.get("session", "")
    greeting = (
        f"<p>Logged in as <strong>{html.escape(user)}</strong>.</p>"
        if user
        else "<p>Not logged in.</p>"
    )
    body = f"""
{greeting}
<h2>The session</h2>
<pre>{html.escape(json.dumps(dict(session), indent=2, sort_keys=True))}</pre>
<form method="post" action="/set">
  <input name="key" placeholder="key" required> <input name="value" placeholder="value">
  <button>Set</button>
</form>
<form method="post" action="/delete">
  <input name="key" placeholder="key" required> <button>Delete key</button>
</form>
<h2>The cookie your browser holds</h2>
<pre>{html.escape(raw_cookie) or "(none yet)"}</pre>
<p class="note">It is encrypted (AES-256-GCM-SIV): unlike Starlette's or Django's signed
cookies, nobody holding it can read what is inside. It is also HttpOnly, so page scripts
cannot read it either.</p>"""
    return page("asgi_sessions demo", body)


async def set_value(request: Request) -> Response:
    same_origin(request)
    form = await read_form(request)
    key = form.get("key", "").strip()
    if key:
        request.session[key] = form.get("value", "")
    return RedirectResponse("/", status_code=303)


async def delete_value(request: Request) -> Response:
    same_origin(request)
    form = await read_form(request)
    request.session.pop(form.get("key", "").strip(), None)
    return RedirectResponse("/", status_code=303)


async def visits(request: Request) -> Response:
    session = request.session
    # Never trust the type of a session value: the /set form can store any
    # string under any key, "visits" included. Anything but a number restarts.
    count = session.get("visits")
    count = count + 1 if isinstance(count, int) else 1
    session["visits"] = count
    text = (
        "<p>First visit: the session was just created.</p>"
        if count == 1
        else f"<p>You have been here {count} times.</p>"
    )
    return page("Visits", text + '<p><a href="/visits">Again</a></p>')


async def test_cookie(request: Request) -> Response:
    # request.session, typed as our Session (Starlette types it as a dict).
    session = session_of(request)
    if request.query_params.get("check"):
        if session.test_cookie_worked():
            session.delete_test_cookie()
            return page("Test cookie", "<p>Your browser accepts cookies.</p>")
        return page("Test cookie", "<p>Your browser does not keep cookies.</p>", 400)
    session.set_test_cookie()
    return page(
        "Test cookie",
        '<p>A test value was stored. <a href="/test-cookie?check=1">Check it</a>.</p>',
    )


async def login(request: Request) -> Response:
    if request.method == "POST":
        same_origin(request)
        form = await read_form(request)
        name = form.get("username", "").strip()
        if not name:
            return page("Log in", "<p>Enter a name.</p>", 400)
        session = session_of(request)
        session.cycle_key()  # new identity on privilege change: no session fixation
        session["user"] = name
        return RedirectResponse("/", status_code=303)
    body = """<form method="post"><input name="username" placeholder="any name" required>
<button>Log in</button></form>
<p class="note">Logging in cycles the session: a cookie planted before login is useless.</p>"""
    return page("Log in", body)


async def logout(request: Request) -> Response:
    same_origin(request)  # GET too (the nav link): a link on another site must not log you out
    session_of(request).flush()
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/set", set_value, methods=["POST"]),
        Route("/delete", delete_value, methods=["POST"]),
        Route("/visits", visits),
        Route("/test-cookie", test_cookie),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
    ],
    middleware=[
        # In production, behind HTTPS, add https_only=True: the cookie is then
        # marked Secure and never sent over plain http://, where anyone on the
        # network could read and replay it. Off here only because `make demo`
        # serves http://127.0.0.1:8000.
        Middleware(SessionMiddleware, secret_key=SECRET_KEY, max_age=60 * 60 * 24),
    ],
)
