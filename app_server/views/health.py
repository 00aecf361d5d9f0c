"""Liveness, readiness and Prometheus metrics, for load balancers and orchestrators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from ..server import AppServer

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: Request, *, server: AppServer) -> Response:
    """The process answers: alive."""
    return PlainTextResponse("ok")


async def readyz(request: Request, *, server: AppServer) -> Response:
    """Ready once every app's ``on_server_loaded`` has finished, until shutdown begins."""
    if server.started:
        return PlainTextResponse("ready")
    return PlainTextResponse("starting or stopping", status_code=503)


async def metrics(request: Request, *, server: AppServer) -> Response:
    """Prometheus metrics, to whom ``--metrics`` allows: they name every app and show the load."""
    access = server.settings.metrics
    if access == "off":
        return PlainTextResponse("Not Found", status_code=404)
    if access == "authenticated" and await server.auth.user(request) is None:
        return PlainTextResponse(
            "/metrics needs a logged-in user (--metrics authenticated): scrape with the auth "
            "module's cookie or header, or serve it with --metrics public behind your own "
            "network rule",
            status_code=403,
        )
    return Response(server.render_metrics(), media_type=CONTENT_TYPE)
