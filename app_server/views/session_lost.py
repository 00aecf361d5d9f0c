"""The page script that keeps a tab from sitting stale once its session cannot come back.

BokehJS reconnects a lost websocket with the page's token; once that token has expired every
server refuses it (an expired token never opens a session), and BokehJS gives up silently. The
script (``templates/session-lost.js``) tells the user and, with ``--on-session-lost reload``,
reloads the page for a fresh token once the server answers. Pages load it from this server
(``'self'``, which any Content-Security-Policy that lets BokehJS load allows); ``autoload.js``
carries it inline.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from ..server import AppServer
    from ..settings import Settings

__all__ = ["PATH", "script", "session_lost_js", "with_script"]

PATH = "/static/app_server/session-lost.js"  # under the server's prefix
RELOAD_DELAY = 1.5  # seconds the notice shows before the page reloads


@cache
def _script(mode: str, token_lifetime: int) -> str:
    source = files("app_server").joinpath("templates/session-lost.js").read_text()
    config = {"mode": mode, "token_lifetime": token_lifetime, "reload_delay": RELOAD_DELAY}
    return source.replace("__APP_SERVER_CONFIG__", json.dumps(config))


def script(settings: Settings) -> str | None:
    """The script for these settings; None with ``on_session_lost="none"``."""
    if settings.on_session_lost == "none":
        return None
    return _script(settings.on_session_lost, settings.session_token_expiration)


def with_script(html: str, root: str, settings: Settings) -> str:
    """The page with a ``<script>`` loading the watcher from ``root`` (this server's root)."""
    if script(settings) is None:
        return html
    version = _version(script(settings) or "")
    tag = f'<script src="{root.rstrip("/")}{PATH}?v={version}"></script>\n'
    at = html.rfind("</body>")
    return html + tag if at < 0 else html[:at] + tag + html[at:]


@cache
def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def session_lost_js(request: Request, *, server: AppServer) -> Response:
    """The script; immutable under the versioned URL pages name, as BokehJS's files are."""
    text = script(server.settings)
    if text is None:
        return Response("Not Found", 404)
    versioned = request.query_params.get("v") == _version(text)
    cache_control = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return Response(text, media_type="text/javascript", headers={"Cache-Control": cache_control})
