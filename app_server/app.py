"""``create_app``: a Starlette ASGI app serving Bokeh applications."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Self

from starlette._utils import get_route_path  # the router's own: the path under root_path
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Lifespan, Receive, Scope, Send
from starlette.websockets import WebSocket

from .applications import AppTarget, normalize_routes
from .forwarded import ForwardedHeaders, Trusted, forwarded
from .security import BodyLimit, SecurityHeaders, XSRFProtected
from .server import AppServer, ServerState
from .settings import Settings, app_settings
from .views import health, pages, session_lost
from .views.compile_errors import compile_failures_as_pages
from .views.static import CachedStaticFiles, ExtensionStaticFiles, bokehjs_static
from .views.ws import no_such_app, websocket_endpoint

__all__ = ["create_app", "mounted_lifespan"]


def create_app(
    apps: Mapping[str, AppTarget] | AppTarget,
    settings: Settings | None = None,
    **options: Any,
) -> Starlette:
    """Serve ``apps`` (``{"/route": target}``, or one target at ``/``) as an ASGI app.

    A target is a path to a ``.py`` file or an app directory, a ``modify_doc(doc)``
    function, or a ``bokeh.application.Application``. ``options`` are fields of
    :class:`Settings` (``prefix=``, ``allow_websocket_origin=``, ...); those of the server
    itself (``port``, ``keep_alive``, ...) belong to the ASGI server that runs the app.
    """
    settings = app_settings(settings, options)
    server = AppServer(normalize_routes(apps), settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    return _ServerApp(server, lifespan)


def _routes(server: AppServer) -> list[BaseRoute]:
    prefix = server.settings.prefix
    # before any app's own /static: Bokeh names extension scripts under the server's root
    routes: list[BaseRoute] = [Mount(prefix + "/static/extensions", ExtensionStaticFiles())]
    for route, context in server.contexts.items():
        base = _base(prefix, route)
        page = partial(compile_failures_as_pages(pages.page), server=server, context=context)
        endpoint = partial(websocket_endpoint, server=server, context=context)
        routes += [
            WebSocketRoute(base + "/ws", endpoint),  # and by _ServerApp without the router
            Route(base or "/", page, name=f"page:{route}"),
            Route(base + "/", page) if base else Route("/", page),
            Route(
                base + "/autoload.js",
                partial(compile_failures_as_pages(pages.autoload), server=server, context=context),
                methods=["GET", "OPTIONS"],
            ),
            Route(base + "/metadata", partial(pages.metadata, server=server, context=context)),
        ]
        static_path = context.application.static_path
        if static_path and os.path.isdir(static_path):
            routes.append(Mount(base + "/static", CachedStaticFiles(directory=static_path)))
    script = partial(session_lost.session_lost_js, server=server)
    routes.append(Route(prefix + session_lost.PATH, script))  # before BokehJS's /static
    routes.append(Mount(prefix + "/static", bokehjs_static(), name="static"))
    for path, view in (
        ("/healthz", health.healthz),
        ("/readyz", health.readyz),
        ("/metrics", health.metrics),
        ("/favicon.ico", pages.favicon),
    ):
        routes.append(Route(prefix + path, partial(view, server=server)))
    auth = server.auth
    for url, handler in (
        (auth.login_url, auth.login_handler),
        (auth.logout_url, auth.logout_handler),
    ):
        if url and handler and url.startswith("/"):
            form: ASGIApp = Route(prefix + url, handler, methods=["GET", "POST"])
            if server.settings.xsrf_cookies:
                form = XSRFProtected(form)
            limit = server.settings.max_body_size
            routes.append(Route(prefix + url, BodyLimit(form, limit)))
    routes.append(WebSocketRoute("/{path:path}", no_such_app))
    if "/" not in server.contexts and not server.settings.disable_index:
        index = partial(pages.index, server=server)
        routes.append(Route(prefix + "/", index))
        if prefix:
            routes.append(Route(prefix, index))
    return routes


def _base(prefix: str, route: str) -> str:
    """An app's base path: its page is there, its websocket at ``<base>/ws``."""
    return prefix + ("" if route == "/" else route)


class mounted_lifespan:
    """The startup and shutdown of app_server apps mounted in a host that owns the lifespan.

    Starlette and FastAPI send lifespan events to the host app only, never to mounted apps,
    so a mounted app_server would run ``on_server_loaded`` on its first request and
    ``on_server_unloaded`` never. Give the host this lifespan (one line)::

        dash = create_app({...})
        api = FastAPI(lifespan=mounted_lifespan(dash))
        api.mount("/dash", dash)

    or enter it from the host's own lifespan: ``async with mounted_lifespan(dash): ...``.
    Each hook runs exactly once per process, however many ways the server is started.
    """

    def __init__(self, *apps: Starlette) -> None:
        self.servers: list[AppServer] = [app.state.server for app in apps]

    def __call__(self, host: object) -> Self:
        """As a Starlette/FastAPI ``lifespan=``: called with the host app."""
        return self

    async def __aenter__(self) -> None:
        for server in self.servers:
            await server.startup()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in reversed(self.servers):
            await server.shutdown()


class _ServerApp(Starlette):
    """``create_app``'s app: it runs the startup hooks before the first request when no
    lifespan did (a mounted app), and sends an app's websocket straight to its endpoint.

    The middleware and the router do nothing to a websocket, but each of their coroutines
    would be held, with its frame, for as long as the websocket is open. Once a user adds
    middleware of their own (``add_middleware``), websockets go through it, and the router.
    """

    def __init__(self, server: AppServer, lifespan: Lifespan[Starlette]) -> None:
        super().__init__(routes=_routes(server), lifespan=lifespan)
        self.state.server = server
        self.server = server
        settings = server.settings
        self.add_middleware(SecurityHeaders, settings=settings)
        # the proxies whose X-Forwarded-* are believed, by the middleware and the shortcut
        self.trusted = Trusted(settings.forwarded_allow_ips) if settings.use_xheaders else None
        if self.trusted is not None:
            self.add_middleware(ForwardedHeaders, trusted=self.trusted)
        self.own_middleware = len(self.user_middleware)
        self.websockets = {  # each app's, by its path
            route.path: route.endpoint
            for route in self.routes
            if isinstance(route, WebSocketRoute) and route.endpoint is not no_such_app
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and self.server.state is ServerState.NEW:
            await self.server.startup()
        if scope["type"] == "websocket" and len(self.user_middleware) == self.own_middleware:
            endpoint = self.websockets.get(get_route_path(scope))
            if endpoint is not None:
                scope["app"] = self
                if self.trusted is not None:
                    scope = forwarded(scope, self.trusted)
                await endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)
