"""Response headers that harden every page, and the checks on login/logout requests: the
XSRF check and the cap on the bodies app_server reads."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import Settings

__all__ = [
    "STRICT_CSP",
    "XSRF_COOKIE",
    "BodyLimit",
    "SecurityHeaders",
    "XSRFProtected",
    "page_policy",
]

XSRF_COOKIE = "_xsrf"

# This server's own resources only, plus what BokehJS itself needs (its inline render call and
# CustomJS's eval). It blocks what many apps load from elsewhere: CDN stylesheets, web fonts
# and scripts (a model's __javascript__), iframes, and blob: scripts (some Panel templates).
STRICT_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'"
)


def page_policy(settings: Settings) -> str | None:
    """The Content-Security-Policy header of HTML pages, if any ('strict' names STRICT_CSP)."""
    policy = settings.content_security_policy.strip()
    if not policy or not settings.security_headers:
        return None
    return STRICT_CSP if policy == "strict" else policy


class SecurityHeaders:
    """Adds nosniff and a referrer policy to every response, and the CSP to HTML pages.

    HTML pages get no Content-Security-Policy unless ``content_security_policy`` sets one
    (``"strict"``: :data:`STRICT_CSP`), as ``bokeh serve`` sends none.
    With ``xsrf_cookies``, pages also set the ``_xsrf`` cookie that login forms echo back.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.policy = page_policy(settings)  # fixed by the settings: worked out once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings, policy = self.settings, self.policy
        has_xsrf = XSRF_COOKIE in Request(scope).cookies

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if settings.security_headers:
                    headers.setdefault("X-Content-Type-Options", "nosniff")
                    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                html = headers.get("content-type", "").startswith("text/html")
                if html and policy:
                    headers.setdefault("Content-Security-Policy", policy)
                if html and settings.xsrf_cookies and not has_xsrf:
                    token = secrets.token_urlsafe(24)
                    headers.append("Set-Cookie", f"{XSRF_COOKIE}={token}; Path=/; SameSite=Strict")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class XSRFProtected:
    """Refuse unsafe requests that do not echo the ``_xsrf`` cookie (form field or header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            request = Request(scope, receive)
            expected = request.cookies.get(XSRF_COOKIE)
            given = request.headers.get("x-xsrftoken") or request.headers.get("x-csrftoken")
            content_type = request.headers.get("content-type", "")
            form = content_type.startswith("application/x-www-form-urlencoded")
            if expected and given is None and form:  # only then is the body worth reading
                body = await request.body()
                given = parse_qs(body.decode("latin-1")).get(XSRF_COOKIE, [None])[0]
                receive = _replay(body)
            if not expected or not given or not secrets.compare_digest(expected, given):
                text = "XSRF cookie and argument missing or not equal"
                # close: the body the client may still be sending is not read
                response = PlainTextResponse(text, 403, headers={"connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413 before it is held: at once when its
    Content-Length says so, else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"the request body is over {self.limit} bytes (--max-body-size)"
        response = PlainTextResponse(text, 413, headers={"connection": "close"})
        await response(scope, receive, send)
