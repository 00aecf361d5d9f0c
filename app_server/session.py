"""A server session: one Document, its lock, its connections and its callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from bokeh.document.callbacks import invoke_with_curdoc
from bokeh.document.events import (
    DocumentPatchedEvent,
    SessionCallbackAdded,
    SessionCallbackRemoved,
)
from bokeh.document.locking import UnlockedDocumentProxy
from bokeh.events import ConnectionLost
from bokeh.io.doc import patch_curdoc
from bokeh.server.callbacks import NextTickCallback, PeriodicCallback, TimeoutCallback

from . import protocol
from ._bokeh.callbacks import app_function, time_handlers, untime_handlers
from ._bokeh.documents import release_modules
from ._panel import connections as panel_connections
from .callbacks import CallbackScheduler, run_with_curdoc
from .exceptions import DocumentAccessError
from .metrics import Metrics
from .ownership import release_document
from .timing import CallbackRun, CallbackTimer

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from bokeh.document import Document
    from bokeh.document.events import DocumentChangedEvent
    from bokeh.server.callbacks import SessionCallback

__all__ = ["Peer", "ServerSession"]

log = logging.getLogger("app_server.session")


class Peer(Protocol):
    """What a session needs of a connection: a way to queue encoded frames, and to end it."""

    synced: bool

    def send(self, frames: list[protocol.Frame]) -> None: ...

    def drop(self, code: int, reason: str) -> None:
        """End the connection now, without waiting for the peer."""


class ServerSession:
    """Hosts one instance of an application for any number of connections.

    Every change to the document happens under ``lock`` on the event loop; a change
    is encoded once and the same frames go to every connection that needs them.
    """

    def __init__(
        self,
        session_id: str,
        document: Document,
        token: str,
        *,
        app_name: str = "",
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        timer: CallbackTimer | None = None,
    ) -> None:
        self.id = session_id
        self.token = token
        self.document = document
        self.app_name = app_name
        self.lock = asyncio.Lock()
        # a list: a session rarely has more than one, and an empty set is 216 bytes
        self.connections: list[Peer] = []
        self.destroyed = False
        self.last_unsubscribe = time.monotonic()
        self._executor = executor
        self._metrics = metrics or Metrics()
        self._timer = timer or CallbackTimer(self._metrics, 0.0)
        self._lock_owner: asyncio.Task[Any] | None = None
        self._patch_source: Peer | None = None
        self._outgoing: list[tuple[DocumentPatchedEvent, Peer | None]] = []
        self._expiration_blocks = 0
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._callbacks = CallbackScheduler(self.invoke, self._loop)
        time_handlers(document, self._timed_handler)
        document.on_change(self._document_changed)
        for callback in document.session_callbacks:
            self._callbacks.add(callback)

    def __repr__(self) -> str:
        return f"<ServerSession {self.app_name}:{self.id}>"

    @property
    def log_extra(self) -> dict[str, str]:
        """Fields that structured (JSON) logs carry for this session."""
        return {"app": self.app_name, "session_id": self.id}

    @property
    def busy(self) -> bool:
        """True while callbacks wait to run or run, or the document is locked."""
        return self._callbacks.busy or self.lock.locked()

    def owns_lock(self) -> bool:
        """Whether the running code holds the document lock (on the loop, in the lock's task)."""
        if threading.get_ident() != self._loop_thread or self._lock_owner is None:
            return False
        return asyncio.current_task() is self._lock_owner

    # Two names of Bokeh's ServerSession that Panel reads once a page has loaded (_panel.py)
    @property
    def _subscribed_connections(self) -> list[Any]:
        return panel_connections(self)

    @property
    def _pending_writes(self) -> list[Any] | None:
        """Not None inside a locked callback, whose changes are sent when it ends, as Bokeh's."""
        return [] if self.owns_lock() else None

    @property
    def expiration_blocked(self) -> bool:
        return self._expiration_blocks > 0

    def block_expiration(self) -> None:
        """Keep the session from being discarded until :meth:`unblock_expiration` (Bokeh's API,
        used by Panel's ``pn.state.block_expiration``)."""
        self._expiration_blocks += 1

    def unblock_expiration(self) -> None:
        if self._expiration_blocks <= 0:
            raise RuntimeError("mismatched block_expiration / unblock_expiration")
        self._expiration_blocks -= 1

    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_unsubscribe

    def subscribe(self, peer: Peer) -> None:
        if peer not in self.connections:
            self.connections.append(peer)

    def unsubscribe(self, peer: Peer) -> None:
        if peer in self.connections:
            self.connections.remove(peer)
        self.last_unsubscribe = time.monotonic()

    async def notify_connection_lost(self) -> None:
        """Fire Bokeh's ``connection_lost`` event for the app (under the lock, like any change)."""
        await self.with_document_locked(self.document.callbacks.trigger_event, ConnectionLost())

    def locked(self) -> _Locked:
        """``async with session.locked():`` hold the document lock; while held, this task may
        change the document, and the changes go out when it is released."""
        return _Locked(self)

    async def with_document_locked(
        self, func: Callable[..., Any], *args: Any, run: CallbackRun | None = None
    ) -> Any:
        """Run ``func(*args)`` (awaited if it is a coroutine) under the lock, curdoc set;
        with ``run``, each stretch it holds the loop is timed."""
        if self.destroyed:
            log.debug("%r: ignoring locked work on a discarded session", self, extra=self.log_extra)
            return None
        step = None if run is None else partial(self._timer.step, run)
        async with self.locked():
            with patch_curdoc(self.document):
                result = func(*args) if step is None else step(func, *args)
            if result is None:  # most callbacks: nothing to await
                return None
            return await run_with_curdoc(result, self.document, step)

    # -- callbacks ---------------------------------------------------------------------

    async def invoke(self, callback: SessionCallback) -> None:
        """Run one session callback now: locked unless marked ``without_document_lock``."""
        if self.destroyed:
            return
        func = callback.callback
        run = CallbackRun(self.app_name, self.id, _KINDS.get(type(callback), "callback"), [func])
        try:
            if not getattr(func, "nolock", False):
                # curdoc is set here: Bokeh's wrapper would set it again, at a cost
                await self.with_document_locked(app_function(func, self.document), run=run)
            elif not await self._invoke_unlocked(func, run):
                return  # it ran on the executor: it held no loop
        except Exception:
            self._metrics.callback_errors += 1
            log.exception("%r: a %s raised", self, type(callback).__name__, extra=self.log_extra)
        self._timer.finish(run)

    async def _invoke_unlocked(self, func: Callable[[], Any], run: CallbackRun) -> bool:
        """A coroutine runs on the loop, timed (True); a plain function on the executor, off
        the loop (False)."""
        proxy = UnlockedDocumentProxy(self.document)
        if inspect.iscoroutinefunction(inspect.unwrap(func)):
            step = partial(self._timer.step, run)
            await run_with_curdoc(step(func), proxy, step)
            return True
        else:
            # invoke_with_curdoc takes the proxy too, whatever its annotation says
            await self._loop.run_in_executor(self._executor, invoke_with_curdoc, proxy, func)  # type: ignore[arg-type]
            return False

    def _timed_handler(
        self, call: Callable[[], Any], what: str, handlers: Sequence[Callable[..., Any]]
    ) -> Any:
        """An ``on_change``/``on_event`` handler Bokeh runs: timed when it runs on the loop."""
        if threading.get_ident() != self._loop_thread:
            return call()
        return self._timer.call(self.app_name, self.id, call, what, handlers)

    def _document_changed(self, event: DocumentChangedEvent) -> None:
        # Bokeh's on_change_dispatch_to tests every event against three runtime-checkable
        # protocols, a noticeable share of a streamed point's cost; a type switch does it
        if isinstance(event, DocumentPatchedEvent):
            self._document_patched(event)
        elif isinstance(event, SessionCallbackAdded):
            self._callbacks.add(event.callback)
        elif isinstance(event, SessionCallbackRemoved):
            self._callbacks.remove(event.callback)

    # -- outgoing changes --------------------------------------------------------------

    def _document_patched(self, event: DocumentPatchedEvent) -> None:
        self._check_access(event)
        # sent when the lock is released (or before a reply), one message for all of them;
        # a change that came in from a connection is not echoed back to it
        self._outgoing.append((event, self._patch_source if _set_by(event, self) else None))

    def _send_changes(self) -> None:
        """Send the changes made under the lock: each event serialized once for everyone."""
        if not self._outgoing:
            return
        outgoing, self._outgoing = self._outgoing, []
        peers = [peer for peer in self.connections if peer.synced]
        if not peers:
            return
        serialized = protocol.serialize_events([event for event, _ in outgoing], self.document)
        sources = {source for _, source in outgoing if source is not None}
        everything: list[protocol.Frame] | None = None
        for peer in peers:
            if peer in sources:  # all but its own changes
                own = [
                    s
                    for s, (_, source) in zip(serialized, outgoing, strict=True)
                    if source is not peer
                ]
                if own:
                    peer.send(protocol.encode(protocol.patch_of_serialized(own)))
                continue
            if everything is None:
                everything = protocol.encode(protocol.patch_of_serialized(serialized))
            peer.send(everything)

    def _check_access(self, event: DocumentPatchedEvent) -> None:
        if self.owns_lock():
            return
        if threading.get_ident() != self._loop_thread:
            where = f"from thread {threading.current_thread().name!r}"
        else:
            where = "outside the document lock (in an unlocked callback?)"
        model, attr = getattr(event, "model", None), getattr(event, "attr", None)
        what = f"{model}.{attr}" if model is not None else type(event).__name__
        raise DocumentAccessError(
            f"{what} was changed {where} in session {self.id}; the change was not sent. "
            "Change documents only in callbacks that hold the lock: schedule the update "
            "with doc.add_next_tick_callback(...)."
        )

    # -- incoming messages -------------------------------------------------------------

    async def pull(self, peer: Peer, message: protocol.Message) -> None:
        async with self.locked():
            self._send_changes()
            reply = protocol.pull_doc_reply(message.msgid, self.document)
            peer.send(protocol.encode(reply))
            peer.synced = True

    async def push(self, peer: Peer, message: protocol.Message) -> None:
        doc_json = protocol.document_of(message)
        async with self.locked():
            invoke_with_curdoc(self.document, lambda: self.document.replace_with_json(doc_json))
            self._send_changes()  # to the session's other connections: this one has it all
            peer.synced = True
            peer.send(protocol.encode(protocol.ok(message.msgid)))

    async def patch(self, peer: Peer, message: protocol.Message) -> None:
        patch_json = protocol.patch_of(message)
        async with self.locked():
            self._patch_source = peer
            try:
                invoke_with_curdoc(
                    self.document,
                    lambda: self.document.apply_json_patch(patch_json, setter=self),  # type: ignore[arg-type]
                )
            finally:
                self._patch_source = None
            self._send_changes()  # the callbacks' changes arrive before the reply
            peer.send(protocol.encode(protocol.ok(message.msgid)))

    # -- end of life -------------------------------------------------------------------

    def destroy(self) -> None:
        """Stop every callback and release the document; the session cannot come back.
        The app code's module stays whole for the destroy hooks: :meth:`release_modules`."""
        if self.destroyed:
            return
        self.destroyed = True
        self._callbacks.close()
        untime_handlers(self.document)
        release_document(self.document, self._document_changed, self.id)

    def release_modules(self) -> None:
        """Clear the module the app code ran in, once the session's ``on_session_destroyed``
        hooks have run: a hook registered in ``main.py`` reads its globals."""
        release_modules(self.document)


_KINDS = {
    PeriodicCallback: "periodic callback",
    TimeoutCallback: "timeout callback",
    NextTickCallback: "next-tick callback",
}


def _set_by(event: DocumentPatchedEvent, setter: object) -> bool:
    """Whether ``setter`` made the change (Bokeh types setters as its own session classes)."""
    return event.setter is cast(Any, setter)


class _Locked:
    """The context of :meth:`ServerSession.locked` (a class: it runs on every callback)."""

    __slots__ = ("_session",)

    def __init__(self, session: ServerSession) -> None:
        self._session = session

    async def __aenter__(self) -> None:
        session = self._session
        session._expiration_blocks += 1
        try:
            await session.lock.acquire()
        except BaseException:
            session._expiration_blocks -= 1
            raise
        session._lock_owner = asyncio.current_task()

    async def __aexit__(self, *exc_info: object) -> None:
        session = self._session
        session._lock_owner = None
        try:
            session._send_changes()
        finally:
            session.lock.release()
            session._expiration_blocks -= 1
