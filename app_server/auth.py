"""Who the user is: Bokeh's ``--auth-module`` hooks, or the host's ASGI authentication.

An auth module is a Python file with Bokeh's names:

- ``get_user(request)`` or ``async get_user_async(request)``: the user, or ``None``;
- ``login_url`` (a path) or ``get_login_url(request)``: where unauthenticated pages go;
- ``logout_url``: shown to apps as ``session_context.logout_url``;
- ``LoginHandler`` / ``LogoutHandler``: here, Starlette endpoints (an ``HTTPEndpoint``
  subclass or an ``async def handler(request)``) served at ``login_url`` / ``logout_url``.

``request`` offers what Bokeh auth modules use of Tornado's handler: ``get_cookie``,
``get_secure_cookie`` (Tornado's signed format, with ``--cookie-secret``),
``set_secure_cookie`` helpers for login handlers, and ``request.headers``/``cookies``.

Without an auth module, a Starlette/FastAPI ``AuthenticationMiddleware`` (``scope["user"]``)
in front of the app is respected: its authenticated user is the session's user.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

from .cookies import create_signed_value, decode_signed_value
from .exceptions import ConfigurationError

__all__ = ["AuthProvider", "AuthRequest", "load_auth_module"]


class AuthRequest:
    """The request an auth module's ``get_user`` receives (Tornado's handler, in Bokeh)."""

    def __init__(self, conn: HTTPConnection, cookie_secret: str | None) -> None:
        self.request = conn
        self._secret = cookie_secret

    @property
    def cookies(self) -> dict[str, str]:
        return dict(self.request.cookies)

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        return self.request.cookies.get(name, default)

    def get_secure_cookie(
        self, name: str, value: str | None = None, max_age_days: float = 31
    ) -> bytes | None:
        if self._secret is None:
            raise ConfigurationError(
                "get_secure_cookie needs a cookie secret: start the server with --cookie-secret "
                "(or set BOKEH_COOKIE_SECRET)"
            )
        raw = value if value is not None else self.request.cookies.get(name)
        return decode_signed_value(self._secret, name, raw, max_age_days=max_age_days)

    def signed_cookie_value(self, name: str, value: str | bytes) -> str:
        """For login handlers: the value to ``response.set_cookie(name, ...)``."""
        if self._secret is None:
            raise ConfigurationError("signing cookies needs --cookie-secret")
        return create_signed_value(self._secret, name, value)


@dataclass(frozen=True)
class AuthProvider:
    """The authentication hooks in force; the empty provider lets everyone in."""

    get_user: Callable[[AuthRequest], Any] | None = None
    login_url: str | None = None
    get_login_url: Callable[[AuthRequest], str] | None = None
    logout_url: str | None = None
    login_handler: Any = None
    logout_handler: Any = None
    cookie_secret: str | None = None

    @property
    def enabled(self) -> bool:
        return self.get_user is not None

    async def user(self, conn: HTTPConnection) -> str | None:
        """The user's name; ``None`` when nobody is logged in."""
        if self.get_user is None:
            return _asgi_user(conn)
        result = self.get_user(AuthRequest(conn, self.cookie_secret))
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return None
        return result.decode() if isinstance(result, bytes) else str(result)

    def login_redirect(self, conn: HTTPConnection, prefix: str) -> str | None:
        if self.get_login_url is not None:
            return self.get_login_url(AuthRequest(conn, self.cookie_secret))
        if self.login_url is not None:
            return prefix + self.login_url
        return None


def _asgi_user(conn: HTTPConnection) -> str | None:
    user = conn.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(getattr(user, "display_name", None) or getattr(user, "identity", None) or user)


def load_auth_module(path: str, cookie_secret: str | None = None) -> AuthProvider:
    """An :class:`AuthProvider` from a Bokeh-style auth module file, checked as Bokeh does."""
    if not os.path.isfile(path):
        raise ConfigurationError(f"--auth-module: there is no file at {path}")
    module = _import(path)
    get_user = getattr(module, "get_user", None)
    get_user_async = getattr(module, "get_user_async", None)
    if get_user and get_user_async:
        raise ConfigurationError(f"{path}: define get_user or get_user_async, not both")
    provider = AuthProvider(
        get_user=get_user or get_user_async,
        login_url=getattr(module, "login_url", None),
        get_login_url=getattr(module, "get_login_url", None),
        logout_url=getattr(module, "logout_url", None),
        login_handler=_endpoint(module, "LoginHandler", path),
        logout_handler=_endpoint(module, "LogoutHandler", path),
        cookie_secret=cookie_secret,
    )
    if provider.enabled and not (provider.login_url or provider.get_login_url):
        raise ConfigurationError(f"{path}: with get_user, define login_url or get_login_url")
    if provider.login_url and provider.get_login_url:
        raise ConfigurationError(f"{path}: define login_url or get_login_url, not both")
    for name in ("login_url", "logout_url"):
        url = getattr(provider, name)
        if url is not None and "://" in url and getattr(provider, name.replace("url", "handler")):
            raise ConfigurationError(f"{path}: a {name} served here must be a path, not {url}")
    return provider


_STARLETTE_EQUIVALENT = {
    "LoginHandler": """    from starlette.responses import RedirectResponse

    async def LoginHandler(request):  # GET shows a form; POST checks it and sets a cookie
        response = RedirectResponse(request.query_params.get("next", "/"), status_code=302)
        response.set_cookie("user", "...")  # or AuthRequest(request, secret).signed_cookie_value
        return response""",
    "LogoutHandler": """    from starlette.responses import RedirectResponse

    async def LogoutHandler(request):
        response = RedirectResponse("/", status_code=302)
        response.delete_cookie("user")
        return response""",
}


def _is_tornado_handler(handler: Any) -> bool:
    """A Tornado ``RequestHandler`` subclass, found without importing Tornado."""
    return inspect.isclass(handler) and any(
        cls.__module__.startswith("tornado.") and cls.__name__ == "RequestHandler"
        for cls in handler.__mro__
    )


def _endpoint(module: ModuleType, name: str, path: str) -> Any:
    handler = getattr(module, name, None)
    if handler is None:
        return None
    from starlette.endpoints import HTTPEndpoint

    if (
        inspect.isclass(handler) and issubclass(handler, HTTPEndpoint)
    ) or inspect.iscoroutinefunction(handler):
        return handler
    if _is_tornado_handler(handler):
        raise ConfigurationError(
            f"{path}: {name} is a Tornado RequestHandler, and app_server runs no Tornado. "
            f"Write it as a Starlette endpoint instead, for example:\n\n"
            f"{_STARLETTE_EQUIVALENT[name]}\n\n"
            "get_user, login_url and logout_url stay as they are (see README, Security)."
        )
    raise ConfigurationError(
        f"{path}: {name} must be a Starlette HTTPEndpoint subclass or an async function of the "
        "request (app_server runs no Tornado handlers)"
    )


def _import(path: str) -> ModuleType:
    name = f"app_server_auth_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"--auth-module: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def unauthenticated(provider: AuthProvider, conn: HTTPConnection, prefix: str) -> Response:
    """Send a page request to the login page, or refuse it."""
    from starlette.responses import PlainTextResponse, RedirectResponse

    login = provider.login_redirect(conn, prefix)
    if login:
        next_url = conn.url.path + (f"?{conn.url.query}" if conn.url.query else "")
        separator = "&" if "?" in login else "?"
        return RedirectResponse(f"{login}{separator}next={_quote(next_url)}", status_code=302)
    return PlainTextResponse("log in to see this application", status_code=401)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
