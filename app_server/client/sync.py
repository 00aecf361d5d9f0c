"""The blocking client, with bokeh.client's functions and signatures.

Each :class:`SyncClientSession` wraps an asyncio :class:`ClientSession` that lives on a
private event loop in a background thread (see ``_thread``). The caller's thread owns the
document between calls: changes it makes are serialized where they happen and handed to
the loop thread, while the server's changes (and the document's session callbacks) wait
until the caller's next call on the session (``pull``, ``push``, ``force_roundtrip``,
``request_server_info``, ...), when the caller is blocked. That is when bokeh.client
applies them too, and it keeps the document out of two threads at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from bokeh.util.token import generate_session_id

from . import _thread
from .session import DEFAULT_MAX_MESSAGE_SIZE, ClientSession, signing_settings
from .urls import (
    DEFAULT_SERVER_WEBSOCKET_URL,
    app_url,
    open_session_page,
    server_url_for_websocket_url,
    session_page_url,
    websocket_url_for_server_url,
)

if TYPE_CHECKING:
    from types import TracebackType

    from bokeh.document import Document
    from bokeh.models.ui import UIElement
    from bokeh.util.browser import BrowserLike, BrowserTarget

    from .connection import ErrorReason

__all__ = ["SyncClientSession", "pull_session", "push_session", "show_session"]

T = TypeVar("T")


class SyncClientSession:
    """bokeh.client's ``ClientSession``: the same methods, blocking, usable with ``with``.

    ``io_loop`` is accepted for compatibility and ignored: the session runs on app_server's
    own client thread and never needs, or touches, the caller's event loop.
    """

    def __init__(
        self,
        session_id: str | None = None,
        websocket_url: str = DEFAULT_SERVER_WEBSOCKET_URL,
        io_loop: Any = None,
        arguments: dict[str, str] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        timeout: float = 30.0,
    ) -> None:
        self._session = ClientSession(
            session_id,
            websocket_url,
            arguments=arguments,
            max_message_size=max_message_size,
            timeout=timeout,
        )
        self._session._defer_document_updates()
        self._calls = 0

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<SyncClientSession {self.id} {self.url} {state}>"

    def __enter__(self) -> SyncClientSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, awaitable: Awaitable[T]) -> T:
        return _thread.run(self._in_call(awaitable))

    async def _in_call(self, awaitable: Awaitable[T]) -> T:
        # On the loop thread, while the caller waits: the document is the loop's to update.
        self._calls += 1
        if self._calls == 1:
            self._session._apply_deferred_updates()
        try:
            return await awaitable
        finally:
            self._calls -= 1
            if self._calls == 0:
                self._session._defer_document_updates()

    # -- properties --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._session.connected

    @property
    def document(self) -> Document | None:
        return self._session.document

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def token(self) -> str:
        return self._session.token

    @property
    def url(self) -> str:
        return self._session.url

    @property
    def error_reason(self) -> ErrorReason | None:
        return self._session.error_reason

    @property
    def error_code(self) -> int | None:
        return self._session.error_code

    @property
    def error_detail(self) -> str:
        return self._session.error_detail

    @property
    def asyncio_session(self) -> ClientSession:
        """The underlying asyncio session (it lives on the client thread's loop)."""
        return self._session

    # -- methods -----------------------------------------------------------------------

    def connect(self) -> None:
        self._run(self._session.connect())

    def check_connection_errors(self) -> None:
        self._session.check_connection_errors()

    def pull(self) -> None:
        self._run(self._session.pull())

    def push(self, document: Document | None = None) -> None:
        self._run(self._session.push(document))

    def request_server_info(self) -> dict[str, Any]:
        return self._run(self._session.request_server_info())

    def force_roundtrip(self) -> None:
        self._run(self._session.force_roundtrip())

    def close(self, why: str = "closed") -> None:
        self._run(self._session.close(why))

    def show(
        self,
        obj: UIElement | None = None,
        browser: str | None = None,
        new: Literal["tab", "window"] = "tab",
        *,
        controller: BrowserLike | None = None,
    ) -> None:
        self._run(self._session.show(obj, browser, new, controller=controller))


def pull_session(
    session_id: str | None = None,
    url: str = "default",
    io_loop: Any = None,
    arguments: dict[str, str] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> SyncClientSession:
    """A session whose document was loaded from the server (created there if needed)."""
    websocket_url = websocket_url_for_server_url(app_url(url))
    session = SyncClientSession(session_id, websocket_url, io_loop, arguments, max_message_size)
    try:
        session.pull()
    except BaseException:
        session.close()
        raise
    return session


def push_session(
    document: Document,
    session_id: str | None = None,
    url: str = "default",
    io_loop: Any = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> SyncClientSession:
    """A session whose server-side document was replaced by ``document``."""
    websocket_url = websocket_url_for_server_url(app_url(url))
    session = SyncClientSession(session_id, websocket_url, io_loop, None, max_message_size)
    try:
        session.push(document)
    except BaseException:
        session.close()
        raise
    return session


def show_session(
    session_id: str | None = None,
    url: str = "default",
    session: SyncClientSession | ClientSession | None = None,
    browser: str | None = None,
    new: BrowserTarget = "tab",
    controller: BrowserLike | None = None,
) -> None:
    """Open a browser on a session: ``session``'s, or ``session_id`` (new if None) at ``url``."""
    if session is not None:
        server_url, session_id = server_url_for_websocket_url(session.url), session.id
    else:
        server_url = app_url(url)
        if session_id is None:
            session_id = generate_session_id(*signing_settings())
    open_session_page(session_page_url(server_url, session_id), browser, new, controller)
