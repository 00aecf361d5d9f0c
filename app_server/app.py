"""``create_app``: a Starlette ASGI app serving Bokeh applications."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .applications import AppTarget, normalize_routes
from .server import AppServer, ServerState
from .settings import Settings
from .views import health, pages
from .views.static import CachedStaticFiles, bokehjs_static
from .views.ws import no_such_app, websocket_endpoint

__all__ = ["create_app"]


def create_app(
    apps: Mapping[str, AppTarget] | AppTarget,
    settings: Settings | None = None,
    **options: Any,
) -> Starlette:
    """Serve ``apps`` (``{"/route": target}``, or one target at ``/``) as an ASGI app.

    A target is a path to a ``.py`` file or an app directory, a ``modify_doc(doc)``
    function, or a ``bokeh.application.Application``. ``options`` are fields of
    :class:`Settings` (``prefix=``, ``allow_websocket_origin=``, ...).
    """
    if settings is None:
        settings = Settings(**options)
    elif options:
        settings = Settings(**{**dict(settings), **options})
    server = AppServer(normalize_routes(apps), settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    app = Starlette(routes=_routes(server), lifespan=lifespan)
    app.state.server = server
    app.add_middleware(_StartOnFirstRequest, server=server)
    return app


def _routes(server: AppServer) -> list[BaseRoute]:
    prefix = server.settings.prefix
    routes: list[BaseRoute] = []
    for route, context in server.contexts.items():
        base = prefix + ("" if route == "/" else route)
        bound = {"server": server, "context": context}
        page = partial(pages.page, **bound)
        routes += [
            Route(base or "/", page, name=f"page:{route}"),
            Route(base + "/", page) if base else Route("/", page),
            WebSocketRoute(base + "/ws", partial(websocket_endpoint, **bound)),
            Route(
                base + "/autoload.js", partial(pages.autoload, **bound), methods=["GET", "OPTIONS"]
            ),
            Route(base + "/metadata", partial(pages.metadata, **bound)),
        ]
        static_path = context.application.static_path
        if static_path and os.path.isdir(static_path):
            routes.append(Mount(base + "/static", CachedStaticFiles(directory=static_path)))
    routes.append(Mount(prefix + "/static", bokehjs_static(), name="static"))
    for path, view in (
        ("/healthz", health.healthz),
        ("/readyz", health.readyz),
        ("/metrics", health.metrics),
        ("/favicon.ico", pages.favicon),
    ):
        routes.append(Route(prefix + path, partial(view, server=server)))
    routes.append(WebSocketRoute("/{path:path}", no_such_app))
    if "/" not in server.contexts and not server.settings.disable_index:
        index = partial(pages.index, server=server)
        routes.append(Route(prefix + "/", index))
        if prefix:
            routes.append(Route(prefix, index))
    return routes


class _StartOnFirstRequest:
    """Run the startup hooks before the first request when no lifespan did (a mounted app)."""

    def __init__(self, app: ASGIApp, server: AppServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and self.server.state is ServerState.NEW:
            await self.server.startup()
        await self.app(scope, receive, send)
