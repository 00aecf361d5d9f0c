"""The contexts Bokeh apps see: one per application, one per session.

Their API is the one Bokeh documents (``bokeh.server.contexts``): the server
context schedules app-wide callbacks and lists sessions; the session context
knows its request, token payload and document lock.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from bokeh.application.application import Application, ServerContext, SessionContext
from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler
from bokeh.core.types import ID
from bokeh.document import Document
from bokeh.io.doc import patch_curdoc
from bokeh.server.callbacks import (
    NextTickCallback,
    PeriodicCallback,
    SessionCallback,
    TimeoutCallback,
)
from bokeh.settings import settings
from bokeh.util.serialization import make_id

from ._bokeh.documents import attach_session_context
from ._bokeh.handlers import has_custom_template, lifecycle_hook
from ._panel import prepare_document as prepare_panel_document
from .admission import Holdings
from .callbacks import CallbackScheduler
from .exceptions import SessionError
from .metrics import Metrics
from .ownership import explain_released_model, explain_shared_model, released_model
from .protocol import CloseCode
from .requests import SessionRequest
from .session import Peer, ServerSession
from .timing import CallbackTimer
from .tokens import Token, token_payload

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from bokeh.application import Application

__all__ = ["AppContext", "AppServerContext", "AppSessionContext", "SessionCreationError"]

log = logging.getLogger("app_server.contexts")

VALIDATION_INTERVAL = 60.0  # seconds between two runs of Bokeh's checks on one app's documents


class SessionCreationError(SessionError):
    """The app code or ``on_session_created`` failed; the session was not created."""


async def _call_hook(hook: Callable[..., Any], *args: Any) -> None:
    """Call a hook and await what it returns (Bokeh drops async hooks' results)."""
    result = hook(*args)
    while inspect.isawaitable(result):
        result = await result


async def _run_lifecycle(handler: Any, name: str, context: Any) -> None:
    """Run a handler's lifecycle hook: the app's own function when it has one."""
    await _call_hook(lifecycle_hook(handler, name) or getattr(handler, name), context)


class AppServerContext(ServerContext):
    """``session_context.server_context``: app-wide callbacks and the list of sessions."""

    def __init__(self, app_context: AppContext) -> None:
        self._app_context = weakref.ref(app_context)
        self._scheduler: CallbackScheduler | None = None
        self._callbacks: dict[str, SessionCallback] = {}

    @property
    def application_context(self) -> AppContext | None:
        return self._app_context()

    @property
    def sessions(self) -> list[AppSessionContext]:  # type: ignore[override]
        context = self._app_context()
        return [] if context is None else list(context.session_contexts)

    def _schedule(self, callback: SessionCallback) -> str:
        if self._scheduler is None:
            self._scheduler = CallbackScheduler(self._invoke, asyncio.get_running_loop())
        self._callbacks[callback.id] = callback
        self._scheduler.add(callback)
        return callback.id

    async def _invoke(self, callback: SessionCallback) -> None:
        if not isinstance(callback, PeriodicCallback):
            self._callbacks.pop(callback.id, None)
        try:
            await _call_hook(callback.callback)
        except Exception:
            context = self._app_context()
            log.exception(
                "app %s: a server %s raised", context and context.name, type(callback).__name__
            )

    def _unschedule(self, callback_id: str, kind: type[SessionCallback]) -> None:
        callback = self._callbacks.get(callback_id)
        if not isinstance(callback, kind):
            raise ValueError(
                f"no {kind.__name__} with id {callback_id!r}: it already ran, was removed, "
                "or was added with another add_*_callback method"
            )
        del self._callbacks[callback_id]
        if self._scheduler is not None:
            self._scheduler.remove(callback)

    def add_next_tick_callback(self, callback: Callable[[], Any]) -> str:
        return self._schedule(NextTickCallback(callback, callback_id=make_id()))

    def add_timeout_callback(self, callback: Callable[[], Any], timeout_milliseconds: int) -> str:
        return self._schedule(
            TimeoutCallback(callback, timeout_milliseconds, callback_id=make_id())
        )

    def add_periodic_callback(self, callback: Callable[[], Any], period_milliseconds: int) -> str:
        return self._schedule(
            PeriodicCallback(callback, period_milliseconds, callback_id=make_id())
        )

    def remove_next_tick_callback(self, callback_id: str) -> None:
        self._unschedule(callback_id, NextTickCallback)

    def remove_timeout_callback(self, callback_id: str) -> None:
        self._unschedule(callback_id, TimeoutCallback)

    def remove_periodic_callback(self, callback_id: str) -> None:
        self._unschedule(callback_id, PeriodicCallback)

    def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
        self._callbacks.clear()


class AppSessionContext(SessionContext):
    """``curdoc().session_context``: what the app knows of its session."""

    def __init__(
        self,
        session_id: str,
        server_context: AppServerContext,
        document: Document,
        token: Token,
        request: SessionRequest | None,
        logout_url: str | None = None,
    ) -> None:
        super().__init__(server_context, ID(session_id))
        self._document = document
        self._token_text = token.text  # its payload is decoded again when asked for, as in Bokeh
        self._user = token.user
        self._request = request
        self._logout_url = logout_url
        self._session: ServerSession | None = None

    @property
    def document(self) -> Document:
        return self._document

    @property
    def session(self) -> ServerSession | None:
        return self._session

    @property
    def destroyed(self) -> bool:
        return self._session is not None and self._session.destroyed

    @property
    def request(self) -> SessionRequest | None:
        return self._request

    @property
    def token_payload(self) -> dict[str, Any]:
        return token_payload(self._token_text)

    @property
    def logout_url(self) -> str | None:
        return self._logout_url

    @property
    def user(self) -> str | None:
        """The authenticated user (auth module or ASGI middleware), if any."""
        return self._user

    def block_expiration(self) -> None:
        """Keep the session alive (Panel calls this on each of ``server_context.sessions``)."""
        if self._session is not None:
            self._session.block_expiration()

    def unblock_expiration(self) -> None:
        if self._session is not None:
            self._session.unblock_expiration()

    async def with_locked_document(self, func: Callable[[Document], Awaitable[None] | None]) -> Any:
        if self._session is None:
            return await _maybe_await(func(self._document))
        return await self._session.with_document_locked(func, self._document)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AppContext:
    """One served application: its Bokeh ``Application``, sessions and server context."""

    def __init__(
        self,
        name: str,
        application: Application,
        *,
        executor: Executor | None = None,
        logout_url: str | None = None,
        metrics: Metrics | None = None,
        timer: CallbackTimer | None = None,
        disconnected_lifetime: float = 5.0,
        on_discarded: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics or Metrics()
        self.timer = timer or CallbackTimer(self.metrics, 0.0)
        self.metrics.sessions_created.setdefault(name, 0)  # export zeros before traffic
        self.metrics.sessions_destroyed.setdefault(name, 0)
        self.application = application
        if not any(isinstance(h, DocumentLifecycleHandler) for h in application.handlers):
            # runs the documents' own on_session_destroyed callbacks, as Bokeh's server does
            application.add(DocumentLifecycleHandler())
        self.executor = executor
        self.logout_url = logout_url
        self.server_context = AppServerContext(self)
        self.page_needs_document = has_custom_template(application)
        # seconds a session outlives its last connection, for a reconnect
        self.disconnected_lifetime = disconnected_lifetime
        self._on_discarded = on_discarded  # the server's memory reclaimer, told of each discard
        self.sessions: dict[str, ServerSession] = {}
        self._contexts: dict[str, AppSessionContext] = {}
        self._clients: collections.Counter[str] = collections.Counter()  # sessions per address
        self._pending: dict[str, asyncio.Future[ServerSession]] = {}
        self._release_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._validated_at: float | None = None
        self.ran_app_code = False  # in this process: its model classes are defined
        self._loop: asyncio.AbstractEventLoop | None = None  # the sessions' loop, once one exists

    def __repr__(self) -> str:
        return f"<AppContext {self.name} sessions={len(self.sessions)}>"

    @property
    def io_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the sessions run on, as Bokeh 3.10's ``ApplicationContext.io_loop`` (Panel
        tells its worker threads from the loop's thread by it)."""
        return self._loop

    @property
    def url(self) -> str:
        """The app's path, as Bokeh's ``ApplicationContext.url`` (Panel's ``pn.state.app_url``)."""
        return self.name

    @property
    def session_contexts(self) -> Iterable[AppSessionContext]:
        return self._contexts.values()

    async def on_server_loaded(self) -> None:
        for handler in self.application.handlers:
            try:
                await _run_lifecycle(handler, "on_server_loaded", self.server_context)
            except Exception:
                log.exception("app %s: on_server_loaded raised", self.name)

    async def on_server_unloaded(self) -> None:
        self.server_context.close()
        for handler in self.application.handlers:
            try:
                await _run_lifecycle(handler, "on_server_unloaded", self.server_context)
            except Exception:
                log.exception("app %s: on_server_unloaded raised", self.name)

    def holdings(self, session_id: str | None, client: str | None) -> Holdings:
        """What admission needs to know of this app for a request naming ``session_id``."""
        context = self._contexts.get(session_id) if session_id else None
        mine = 0 if client is None else self._clients[client]
        return Holdings(
            exists=session_id in self.sessions or session_id in self._pending,
            owner=None if context is None else context.user,
            sessions=len(self.sessions) + len(self._pending),
            client_sessions=mine,
        )

    async def create_session_if_needed(
        self, token: Token, request: SessionRequest | None = None
    ) -> ServerSession:
        """The token's session, created (app code run) if it does not exist yet.

        Who may open it was decided before (:mod:`app_server.admission`); concurrent requests
        for one new session share its creation.
        """
        session_id = token.session_id
        if session_id in self.sessions:
            return self.sessions[session_id]
        if session_id in self._pending:
            return await asyncio.shield(self._pending[session_id])
        future: asyncio.Future[ServerSession] = asyncio.get_running_loop().create_future()
        self._pending[session_id] = future
        try:
            session = await self._create_session(session_id, token, request)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else must log it
            raise
        else:
            future.set_result(session)
            return session
        finally:
            del self._pending[session_id]

    async def _create_session(
        self, session_id: str, token: Token, request: SessionRequest | None
    ) -> ServerSession:
        self._loop = asyncio.get_running_loop()
        document = Document()
        context = AppSessionContext(
            session_id, self.server_context, document, token, request, self.logout_url
        )
        attach_session_context(document, context)
        try:
            for handler in self.application.handlers:
                await _run_lifecycle(handler, "on_session_created", context)
            with patch_curdoc(document):  # function handlers may call curdoc() too
                self._initialize_document(document)
            prepare_panel_document(document, self.application)
            failure = _handler_failure(self.application)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            log.exception(
                "app %s, session %s: creating the session failed",
                self.name,
                session_id,
                extra={"app": self.name, "session_id": session_id},
            )
        if failure is None and (reused := released_model(document)) is not None:
            failure = explain_released_model(reused)
        if failure is not None:
            others = (s.document for s in self.sessions.values())
            failure = explain_shared_model(failure, others) or failure
            log.error(
                "app %s, session %s: the app code failed: %s",
                self.name,
                session_id,
                failure,
                extra={"app": self.name, "session_id": session_id},
            )
            raise SessionCreationError(f"the application {self.name} failed: {failure}")
        session = ServerSession(
            session_id,
            document,
            token.text,
            app_name=self.name,
            executor=self.executor,
            metrics=self.metrics,
            timer=self.timer,
        )
        context._session = session
        self.sessions[session_id] = session
        self._contexts[session_id] = context
        if context.request is not None and context.request.remote_ip is not None:
            self._clients[context.request.remote_ip] += 1
        self.metrics.sessions_created[self.name] += 1
        log.debug("app %s: created session %s", self.name, session_id, extra=session.log_extra)
        return session

    def _initialize_document(self, document: Document) -> None:
        """``Application.initialize_document``, with Bokeh's integrity checks at most once a minute.

        Bokeh runs ``Document.validate()`` on every new document: a quarter of a small app's
        time, to log the same warnings (EMPTY_LAYOUT, BAD_COLUMN_NAME...) for every session.
        """
        self.ran_app_code = True
        application = self.application
        if type(application).initialize_document is not Application.initialize_document:
            application.initialize_document(document)  # an Application of the user's own
            return
        for handler in application.handlers:
            handler.modify_document(document)  # a failure is reported by the caller
        now = time.monotonic()
        if (
            settings.perform_document_validation()
            and _handler_failure(application) is None
            and (self._validated_at is None or now - self._validated_at >= VALIDATION_INTERVAL)
        ):
            self._validated_at = now
            document.validate()

    # -- connections come and go -----------------------------------------------------

    def attach(self, session: ServerSession, peer: Peer) -> None:
        """A connection to the session opened: a reconnect keeps the session."""
        session.subscribe(peer)
        self._cancel_release(session)

    async def detach(self, session: ServerSession, peer: Peer) -> None:
        """A connection closed: tell the app, and discard the session after a grace period
        once its last connection is gone."""
        session.unsubscribe(peer)
        await session.notify_connection_lost()
        self._release_later(session)

    def _release_later(self, session: ServerSession) -> None:
        if session.connections or session.destroyed:
            return
        self._cancel_release(session)
        loop = asyncio.get_running_loop()
        self._release_timers[session.id] = loop.call_later(
            self.disconnected_lifetime, self._start_release, session
        )

    def _cancel_release(self, session: ServerSession) -> None:
        timer = self._release_timers.pop(session.id, None)
        if timer is not None:
            timer.cancel()

    def _start_release(self, session: ServerSession) -> None:
        self._release_timers.pop(session.id, None)
        task = asyncio.get_running_loop().create_task(self._release(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, session: ServerSession) -> None:
        if session.connections or session.destroyed:
            return
        if session.expiration_blocked:  # busy in a callback: look again later
            self._release_later(session)
            return
        try:
            await self.discard_session(session)
        except Exception:
            log.exception("app %s, session %s: discarding failed", self.name, session.id)

    # -- end of sessions ---------------------------------------------------------------

    async def discard_session(self, session: ServerSession) -> None:
        """Destroy a session and run its destroy hooks; its connections are closed (1001)."""
        for peer in list(session.connections):
            peer.drop(CloseCode.GOING_AWAY, "the session expired")
            session.unsubscribe(peer)
        self._cancel_release(session)
        async with session.locked():
            if session.destroyed:  # discarded meanwhile (the reaper and a release at once)
                return
            session.destroy()
        self.sessions.pop(session.id, None)
        self.metrics.sessions_destroyed[self.name] += 1
        context = self._contexts.pop(session.id, None)
        if context is not None and context.request is not None:
            client = context.request.remote_ip
            if client is not None:
                self._clients[client] -= 1
                if not self._clients[client]:
                    del self._clients[client]
        try:
            if context is not None:
                await self._run_destroy_hooks(session, context)
        finally:  # only now: a hook the app code registered reads its module's globals
            session.release_modules()
        if context is None:
            return
        log.debug("app %s: discarded session %s", self.name, session.id, extra=session.log_extra)
        if self._on_discarded is not None:
            self._on_discarded()

    async def _run_destroy_hooks(self, session: ServerSession, context: AppSessionContext) -> None:
        for handler in self.application.handlers:
            try:
                await _run_lifecycle(handler, "on_session_destroyed", context)
            except Exception:
                log.exception(
                    "app %s, session %s: on_session_destroyed raised", self.name, session.id
                )

    async def cleanup_sessions(self, unused_lifetime_seconds: float) -> int:
        """Discard the sessions unused for longer than the lifetime; how many were."""
        stale = [
            s
            for s in self.sessions.values()
            if not s.connections
            and not s.expiration_blocked
            and s.idle_seconds() >= unused_lifetime_seconds
        ]
        for session in stale:
            if not session.connections and not session.destroyed:
                await self.discard_session(session)
        return len(stale)

    async def discard_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.discard_session(session)


def _handler_failure(application: Application) -> str | None:
    for handler in application.handlers:
        if getattr(handler, "failed", False):
            return f"{handler.error}\n{handler.error_detail}"
    return None
