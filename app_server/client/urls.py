"""Where a client session connects, and the page that shows it, as bokeh.client computes them.

An application at ``http://host:5006/app`` has its websocket at ``ws://host:5006/app/ws``;
``"default"`` means Bokeh's default, ``http://localhost:5006/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from bokeh.resources import DEFAULT_SERVER_HTTP_URL
from bokeh.util.browser import NEW_PARAM, get_browser_controller

if TYPE_CHECKING:
    from bokeh.util.browser import BrowserLike, BrowserTarget

__all__ = [
    "DEFAULT_SERVER_HTTP_URL",
    "DEFAULT_SERVER_WEBSOCKET_URL",
    "app_url",
    "open_session_page",
    "server_url_for_websocket_url",
    "session_page_url",
    "websocket_url_for_server_url",
    "with_arguments",
]


def app_url(url: str) -> str:
    """Normalize an application URL: ``"default"`` expanded, no trailing slash."""
    if url == "default":
        url = DEFAULT_SERVER_HTTP_URL
    if url.startswith(("ws:", "wss:")):
        raise ValueError(f"{url!r} is a websocket URL; pass the application's http(s) URL instead")
    return url.rstrip("/")


def websocket_url_for_server_url(url: str) -> str:
    """``http(s)://host/app`` to ``ws(s)://host/app/ws``."""
    if url.startswith("http:"):
        ws_url = "ws" + url[4:]
    elif url.startswith("https:"):
        ws_url = "wss" + url[5:]
    else:
        raise ValueError(f"{url!r} is not an http(s) URL of a Bokeh application")
    return ws_url + ("ws" if ws_url.endswith("/") else "/ws")


def server_url_for_websocket_url(url: str) -> str:
    """``ws(s)://host/app/ws`` to ``http(s)://host/app/`` (the inverse, trailing slash kept)."""
    if url.startswith("ws:"):
        http_url = "http" + url[2:]
    elif url.startswith("wss:"):
        http_url = "https" + url[3:]
    else:
        raise ValueError(f"{url!r} is not a ws(s) URL")
    if not http_url.endswith("/ws"):
        raise ValueError(f"the websocket URL {url!r} does not end in /ws")
    return http_url[:-2]


DEFAULT_SERVER_WEBSOCKET_URL = websocket_url_for_server_url(DEFAULT_SERVER_HTTP_URL)


def with_arguments(url: str, arguments: dict[str, str] | None) -> str:
    """Append request arguments for the application, URL-encoded, as bokeh.client does."""
    if not arguments:
        return url
    query = "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in arguments.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def session_page_url(server_url: str, session_id: str) -> str:
    """The page that shows the existing session ``session_id`` of the app at ``server_url``."""
    return f"{server_url}?bokeh-session-id={quote_plus(session_id)}"


def open_session_page(
    page_url: str,
    browser: str | None = None,
    new: BrowserTarget = "tab",
    controller: BrowserLike | None = None,
) -> None:
    """Open ``page_url`` with ``controller``, or with the browser named by ``browser``."""
    if controller is None:
        controller = get_browser_controller(browser=browser)
    controller.open(page_url, new=NEW_PARAM[new])
