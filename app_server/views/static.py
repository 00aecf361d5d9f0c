"""BokehJS and app static files, with long caching for versioned URLs."""

from __future__ import annotations

from bokeh.util.paths import bokehjs_path
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["CachedStaticFiles", "bokehjs_static"]

ONE_YEAR = 365 * 24 * 3600


class CachedStaticFiles(StaticFiles):
    """Files whose URL carries ``?v=<hash>`` are immutable; others must revalidate."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned_url = b"v=" in scope.get("query_string", b"")
        cache_control = (
            f"public, max-age={ONE_YEAR}, immutable".encode() if versioned_url else b"no-cache"
        )

        async def send_with_cache(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", cache_control),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_cache)


def bokehjs_static() -> CachedStaticFiles:
    return CachedStaticFiles(directory=bokehjs_path())
