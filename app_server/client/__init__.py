"""Python clients for Bokeh server sessions (app_server's or ``bokeh serve``'s).

Two uses, as for bokeh.client: driving server applications from tests, and preparing a
session (pull it, change it) before a viewer opens it with ``bokeh.embed.server_session``.

- :class:`ClientSession` is asyncio-native: ``async with ClientSession(url=...) as s:
  await s.pull()``; changes on either side propagate while it is connected.
- :func:`pull_session`, :func:`push_session`, :func:`show_session` and
  :class:`SyncClientSession` are bokeh.client's blocking API, usable from any thread,
  including one that runs its own event loop.
"""

from .connection import ErrorReason
from .errors import ClientError, ConnectionFailed, ConnectionLost, ReplyTimeout, ServerError
from .session import ClientSession
from .sync import SyncClientSession, pull_session, push_session, show_session
from .urls import (
    DEFAULT_SERVER_HTTP_URL,
    DEFAULT_SERVER_WEBSOCKET_URL,
    server_url_for_websocket_url,
    websocket_url_for_server_url,
)

__all__ = [
    "DEFAULT_SERVER_HTTP_URL",
    "DEFAULT_SERVER_WEBSOCKET_URL",
    "ClientError",
    "ClientSession",
    "ConnectionFailed",
    "ConnectionLost",
    "ErrorReason",
    "ReplyTimeout",
    "ServerError",
    "SyncClientSession",
    "pull_session",
    "push_session",
    "server_url_for_websocket_url",
    "show_session",
    "websocket_url_for_server_url",
]
