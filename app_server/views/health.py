"""Liveness, readiness and Prometheus metrics, for load balancers and orchestrators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

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
    return PlainTextResponse(
        server.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
