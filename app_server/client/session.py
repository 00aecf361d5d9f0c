"""The asyncio ``ClientSession``: a local Document kept in sync with a server session.

Changes made on either side travel as PATCH-DOC messages while the connection is open.
A change the server sent is applied with this session as its ``setter``, which is how
``_document_patched`` knows not to echo it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, cast

from bokeh.core.types import ID
from bokeh.document import Document
from bokeh.document.callbacks import invoke_with_curdoc
from bokeh.settings import settings
from bokeh.util.token import generate_jwt_token, generate_session_id

from .. import protocol
from ..callbacks import CallbackScheduler, run_with_curdoc
from ..exceptions import ConfigurationError
from .connection import Connection, ConnectionState, ErrorReason
from .errors import ConnectionFailed, ServerError
from .urls import (
    DEFAULT_SERVER_WEBSOCKET_URL,
    app_url,
    open_session_page,
    server_url_for_websocket_url,
    session_page_url,
    websocket_url_for_server_url,
    with_arguments,
)

if TYPE_CHECKING:
    from types import TracebackType

    from bokeh.document.events import (
        DocumentPatchedEvent,
        SessionCallbackAdded,
        SessionCallbackRemoved,
    )
    from bokeh.models.ui import UIElement
    from bokeh.server.callbacks import SessionCallback
    from bokeh.util.browser import BrowserLike

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "ClientSession", "signing_settings"]

log = logging.getLogger("app_server.client")

DEFAULT_MAX_MESSAGE_SIZE = 20 * 1024 * 1024


def signing_settings(
    secret_key: str | bytes | None = None, signed: bool | None = None
) -> tuple[bytes | None, bool]:
    """The key and signing flag for ids and tokens; unset ones come from BOKEH_SECRET_KEY and
    BOKEH_SIGN_SESSIONS, read now (bokeh caches the key and its defaults are import-time)."""
    if secret_key is None:
        secret_key = settings.secret_key()
    if isinstance(secret_key, str):
        secret_key = secret_key.encode()
    signed = settings.sign_sessions() if signed is None else signed
    if signed and not secret_key:
        raise ConfigurationError(
            "signed session ids need the server's secret key: pass secret_key=... or set "
            "BOKEH_SECRET_KEY"
        )
    return secret_key, signed


class ClientSession:
    """A websocket connection to one server-side session, with its Document kept in sync.

    Call :meth:`pull` or :meth:`push` first; ``document`` is ``None`` until then. Use it as
    ``async with ClientSession(url=...) as session:`` so that the connection is closed.
    ``websocket_url`` (bokeh.client's spelling) or ``url`` (the application's http URL)
    says where to connect; ``timeout`` bounds connecting and every request.
    """

    def __init__(
        self,
        session_id: str | None = None,
        websocket_url: str = DEFAULT_SERVER_WEBSOCKET_URL,
        *,
        url: str | None = None,
        arguments: dict[str, str] | None = None,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        timeout: float = 30.0,
        secret_key: str | bytes | None = None,
        signed: bool | None = None,
    ) -> None:
        if url is not None:
            if websocket_url != DEFAULT_SERVER_WEBSOCKET_URL:
                raise ValueError("give either url or websocket_url, not both")
            websocket_url = websocket_url_for_server_url(app_url(url))
        server_url_for_websocket_url(websocket_url)  # validates it
        self._secret_key, self._signed = signing_settings(secret_key, signed)
        self._id = session_id or generate_session_id(self._secret_key, self._signed)
        self._url = websocket_url
        self._arguments = arguments
        self._max_message_size = max_message_size
        self._timeout = timeout
        self._document: Document | None = None
        self._connection: Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._server_info: dict[str, Any] | None = None
        self._callbacks: CallbackScheduler | None = None
        self._quiet = False
        self._pushes = 0
        self._deferred: list[protocol.Message] | None = None
        self._document_free = asyncio.Event()
        self._document_free.set()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<ClientSession {self._id} {self._url} {state}>"

    async def __aenter__(self) -> ClientSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- properties --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the websocket is open and the server has acknowledged it."""
        return self._connection is not None and self._connection.state is ConnectionState.CONNECTED

    @property
    def document(self) -> Document | None:
        """The Document kept in sync with the server's; ``None`` until pull() or push()."""
        return self._document

    @property
    def id(self) -> str:
        return self._id

    @property
    def token(self) -> str:
        """A fresh JWT for this session id (signed if the session is)."""
        return generate_jwt_token(ID(self._id), secret_key=self._secret_key, signed=self._signed)

    @property
    def url(self) -> str:
        """The websocket URL (``.../ws``), without the request arguments."""
        return self._url

    @property
    def error_reason(self) -> ErrorReason | None:
        ended = self._connection.ended if self._connection else None
        return ended.reason if ended else None

    @property
    def error_code(self) -> int | None:
        ended = self._connection.ended if self._connection else None
        return ended.code if ended else None

    @property
    def error_detail(self) -> str:
        ended = self._connection.ended if self._connection else None
        return ended.detail if ended else ""

    # -- connection --------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the websocket if it was never opened; errors go to check_connection_errors()."""
        async with self._connect_lock:
            if self._connection is not None:
                return
            self._connection = Connection(
                with_arguments(self._url, self._arguments),
                self.token,
                max_message_size=self._max_message_size,
                timeout=self._timeout,
                on_message=self._on_server_patch,
                on_close=self._on_disconnect,
            )
            await self._connection.open()

    def check_connection_errors(self) -> None:
        """Raise :class:`ConnectionFailed` (an ``OSError``) saying why we are not connected."""
        connection = self._connection
        if connection is None:
            raise ConnectionFailed(f"not connected to {self._url}: call connect() first")
        if connection.state is ConnectionState.CONNECTED:
            return
        ended = connection.ended
        if ended is None:
            raise ConnectionFailed(connection.describe_end())
        if ended.reason is ErrorReason.HTTP_ERROR:
            if ended.code == 404:
                raise ConnectionFailed(
                    f"Check your application path! The given Path is not valid: {self._url} "
                    "(HTTP 404)"
                )
            raise ConnectionFailed(
                f"the server refused the websocket at {self._url} with HTTP {ended.code}: "
                f"{ended.detail}"
            )
        if ended.reason is ErrorReason.NETWORK_ERROR and self._document is None:
            raise ConnectionFailed(
                f"could not connect to {self._url} ({ended.detail}); is the server running? "
                "Start it with `app-server serve` (or `bokeh serve`)."
            )
        raise ConnectionFailed(connection.describe_end())

    async def _ready(self) -> Connection:
        await self.connect()
        self.check_connection_errors()
        assert self._connection is not None
        return self._connection

    async def close(self, why: str = "closed") -> None:
        """Close the connection (queued changes are sent first); the session stays closed."""
        if self._connection is not None:
            await self._connection.close(why)

    # -- requests ----------------------------------------------------------------------

    async def pull(self) -> None:
        """Replace ``document``'s content with the server's (the same object on every call)."""
        connection = await self._ready()
        document = self._document if self._document is not None else Document()

        def replace(reply: protocol.Message) -> None:  # in the reader: nothing slips in between
            with self._quiet_changes():
                document.replace_with_json(protocol.document_of(reply))
            document.models.flush_synced()  # every model now exists on the server
            if self._document is None:
                self._attach(document)

        await connection.request(protocol.make_message(protocol.PULL_DOC_REQ), on_reply=replace)

    async def push(self, document: Document | None = None) -> None:
        """Replace the server's document with ``document`` and keep the two in sync."""
        if self._document is None:
            document = document if document is not None else Document()
        elif document is None or document is self._document:
            document = self._document
        else:
            raise ValueError("Cannot push() a different document from existing session.document")
        connection = await self._ready()
        message = protocol.push_doc(document)
        attaching = self._document is None
        if attaching:
            self._attach(document)
        # Until the OK, the server's patches describe the document being replaced: drop them.
        self._pushes += 1
        done = False

        def pushed(_: protocol.Message) -> None:
            nonlocal done
            self._pushes, done = self._pushes - 1, True

        try:
            await connection.request(message, on_reply=pushed)
        except BaseException:
            if attaching:
                self._detach()
                self._document = None
            raise
        finally:
            if not done:
                self._pushes -= 1

    async def request_server_info(self) -> dict[str, Any]:
        """The server's SERVER-INFO-REPLY content (``{"version_info": {...}}``), cached."""
        if self._server_info is None:
            connection = await self._ready()
            reply = await connection.request(protocol.make_message(protocol.SERVER_INFO_REQ))
            self._server_info = reply.content
        return self._server_info

    async def force_roundtrip(self) -> None:
        """Wait until the server has handled everything sent so far, and sent its reactions.

        Raises :class:`ServerError` if the server refused a change this client sent.
        """
        connection = await self._ready()
        await connection.request(protocol.make_message(protocol.SERVER_INFO_REQ))
        refused, connection.refused_patches = connection.refused_patches, []
        if refused:
            raise ServerError(
                f"the server refused {len(refused)} change(s) sent by this client; "
                f"first: {refused[0]}",
                refused[0],
            )

    async def show(
        self,
        obj: UIElement | None = None,
        browser: str | None = None,
        new: Literal["tab", "window"] = "tab",
        *,
        controller: BrowserLike | None = None,
    ) -> None:
        """Open a browser on this session, after adding ``obj`` to the document."""
        if obj is not None:
            if self._document is None:
                raise RuntimeError("show(obj) needs a document: call pull() or push() first")
            if obj not in self._document.roots:
                self._document.add_root(obj)
                await self.force_roundtrip()  # the page must find obj on the server
        page = session_page_url(server_url_for_websocket_url(self._url), self._id)
        open_session_page(page, browser, new, controller)

    # -- document synchronization --------------------------------------------------------

    def _attach(self, document: Document) -> None:
        self._document = document
        document.callbacks.on_change_dispatch_to(self)
        self._callbacks = CallbackScheduler(self._invoke_callback, asyncio.get_running_loop())
        for callback in document.session_callbacks:
            self._callbacks.add(callback)

    def _detach(self) -> None:
        if self._document is not None:
            self._document.remove_on_change(self)
        if self._callbacks is not None:
            self._callbacks.close()
            self._callbacks = None

    def _on_disconnect(self) -> None:
        self._detach()

    @contextmanager
    def _quiet_changes(self) -> Iterator[None]:
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _document_patched(self, event: DocumentPatchedEvent) -> None:
        """A local change: send it, from whichever thread made it (serialized right here)."""
        if event.setter is cast(Any, self) or self._quiet or self._document is None:
            return
        if not self.connected:
            log.debug("session %s is not connected: a change was not sent", self._id)
            return
        assert self._connection is not None
        self._connection.send(protocol.patch_doc([event], self._document), patch=True)

    def _on_server_patch(self, message: protocol.Message) -> None:
        if self._pushes:
            log.debug("session %s: dropping a patch that predates our push", self._id)
        elif self._deferred is not None:
            self._deferred.append(message)
        else:
            self._apply_server_patch(message)

    def _apply_server_patch(self, message: protocol.Message) -> None:
        document = self._document
        if document is None:
            return
        patch = protocol.patch_of(message)
        invoke_with_curdoc(
            document,
            lambda: document.apply_json_patch(patch, setter=self),  # type: ignore[arg-type]
        )

    # Used by the synchronous facade: while its caller's thread owns the document, the
    # server's patches and the session callbacks wait for the caller's next call.

    def _defer_document_updates(self) -> None:
        if self._deferred is None:
            self._deferred = []
            self._document_free.clear()

    def _apply_deferred_updates(self) -> None:
        deferred, self._deferred = self._deferred or [], None
        self._document_free.set()
        for message in deferred:
            try:
                self._apply_server_patch(message)
            except Exception:
                log.exception("session %s: applying a PATCH-DOC failed", self._id)

    # -- session callbacks added to the client's document --------------------------------

    def _session_callback_added(self, event: SessionCallbackAdded) -> None:
        if self._callbacks is not None:
            self._callbacks.add(event.callback)

    def _session_callback_removed(self, event: SessionCallbackRemoved) -> None:
        if self._callbacks is not None:
            self._callbacks.remove(event.callback)

    async def _invoke_callback(self, callback: SessionCallback) -> None:
        await self._document_free.wait()
        document = self._document
        if document is None:
            return
        try:
            result = invoke_with_curdoc(document, callback.callback)  # type: ignore[func-returns-value, unused-ignore]  # bokeh 3.9 types it None
            await run_with_curdoc(result, document)
        except Exception:
            log.exception("session %s: a %s raised", self._id, type(callback).__name__)
