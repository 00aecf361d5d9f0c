"""The exceptions the client raises, under app_server's one root.

AppServerError
 └── ClientError
      ├── ConnectionFailed   no connection could be opened (also an ``OSError``, as in bokeh.client)
      ├── ConnectionLost     the connection ended while a reply was awaited (a ``ConnectionError``)
      ├── ServerError        the server answered with an ERROR message (a ``RuntimeError``)
      └── ReplyTimeout       no reply within the session's timeout (a ``TimeoutError``)

The builtin bases keep code written for ``bokeh.client`` (which raises ``OSError`` and
``RuntimeError``) working unchanged.
"""

from __future__ import annotations

from ..exceptions import AppServerError

__all__ = ["ClientError", "ConnectionFailed", "ConnectionLost", "ReplyTimeout", "ServerError"]


class ClientError(AppServerError):
    """Root of the errors raised by ``app_server.client``."""


class ConnectionFailed(ClientError, OSError):
    """The websocket could not be opened; the message says why and what to check."""


class ConnectionLost(ClientError, ConnectionError):
    """The connection closed (or was never open) while the client needed it."""


class ServerError(ClientError, RuntimeError):
    """The server refused a request; ``text`` is the server's explanation."""

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class ReplyTimeout(ClientError, TimeoutError):
    """The server did not answer in time; raise the session's ``timeout`` if it is slow."""
