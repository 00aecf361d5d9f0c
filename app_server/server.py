"""The state of one running server: settings, app contexts, executor, metrics and the reaper."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import functools
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import HTTPConnection

from .auth import AuthProvider, load_auth_module
from .contexts import AppContext
from .metrics import Metrics
from .protocol import CloseCode

if TYPE_CHECKING:
    from bokeh.application import Application

    from .connection import Connection
    from .session import ServerSession
    from .settings import Settings

__all__ = ["AppServer"]

log = logging.getLogger("app_server.server")

SHUTDOWN_TIMEOUT = 10.0
COLLECT_DELAY = 1.0
# A full collection stalls the loop while it runs (about 0.6 ms per live small session): the
# next one waits at least this many times as long, so collections take at most ~5% of it.
COLLECT_SPACING = 20


@functools.cache
def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, which hands freed heap pages back to the OS; else a no-op."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    return lambda: trim(0)


def release_memory() -> None:
    """One full collection, then return what it freed to the operating system."""
    gc.collect()
    _malloc_trim()()


def _auth_provider(settings: Settings) -> AuthProvider:
    secret = settings.cookie_secret.get_secret_value() if settings.cookie_secret else None
    if settings.auth_module:
        return load_auth_module(settings.auth_module, secret)
    return AuthProvider(cookie_secret=secret)


class ServerState(enum.Enum):
    NEW = "new"
    STARTED = "started"
    STOPPED = "stopped"


class AppServer:
    """Everything ``create_app`` builds, passed explicitly to every view."""

    def __init__(self, applications: dict[str, Application], settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.auth = _auth_provider(settings)
        self.executor = ThreadPoolExecutor(settings.num_threads, thread_name_prefix="app_server")
        logout_url = self.auth.logout_url
        if logout_url and logout_url.startswith("/"):
            logout_url = settings.prefix + logout_url
        self.contexts = {
            route: AppContext(
                route,
                application,
                executor=self.executor,
                metrics=self.metrics,
                logout_url=logout_url,
                max_sessions=settings.max_sessions_per_app,
                max_sessions_per_client=settings.max_sessions_per_client,
            )
            for route, application in applications.items()
        }
        self.connections: set[Connection] = set()
        self.templates = Environment(
            loader=PackageLoader("app_server", "templates"), autoescape=select_autoescape()
        )
        self.state = ServerState.NEW
        self.draining = False  # shutting down: new websockets are refused
        self._start_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._collect_timer: asyncio.TimerHandle | None = None
        self._next_collect_at = 0.0  # loop time
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        """Serving: started, and not yet shutting down (what /readyz reports)."""
        return self.state is ServerState.STARTED and not self.draining

    def public_host(self, conn: HTTPConnection) -> str | None:
        """The host the client addressed (X-Forwarded-Host with --use-xheaders)."""
        if self.settings.use_xheaders and "x-forwarded-host" in conn.headers:
            return conn.headers["x-forwarded-host"].split(",")[0].strip()
        return conn.headers.get("host")

    def render_metrics(self) -> str:
        open_sessions = {name: len(c.sessions) for name, c in self.contexts.items()}
        backlog = sum(connection.backlog for connection in self.connections)
        return self.metrics.render(open_sessions, backlog)

    async def startup(self) -> None:
        """Run every app's ``on_server_loaded`` and start the reaper, once."""
        async with self._start_lock:
            if self.state is not ServerState.NEW:
                return
            for context in self.contexts.values():
                await context.on_server_loaded()
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
            # what exists after startup (modules, shared data) lives as long as the process:
            # leave it out of every later full collection, which then costs ~1 ms, not ~80
            gc.freeze()
            self.state = ServerState.STARTED
            log.info("app_server started: %s", ", ".join(sorted(self.contexts)))

    async def shutdown(self) -> None:
        """Close websockets (1001), discard sessions, run unload hooks, stop threads."""
        if self.state is not ServerState.STARTED:
            return
        self.state = ServerState.STOPPED
        if self._reaper is not None:
            self._reaper.cancel()
        if self._collect_timer is not None:
            self._collect_timer.cancel()
        await self.drain()
        for context in self.contexts.values():
            try:
                await asyncio.wait_for(context.discard_all(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.error("app %s: discarding sessions timed out", context.name)
            await context.on_server_unloaded()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("app_server stopped")

    async def drain(self) -> None:
        """Refuse new websockets and close the open ones with 1001 (going away).

        ``shutdown`` starts with this; ``app-server serve`` calls it as soon as it is told to
        stop, before uvicorn would close the websockets itself (with 1012) and only then run
        the lifespan shutdown.
        """
        self.draining = True
        closing = [c.close(CloseCode.GOING_AWAY, "server shutting down") for c in self.connections]
        if closing:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), SHUTDOWN_TIMEOUT
                )
            except TimeoutError:
                log.error("closing %d websockets timed out", len(closing))

    def session_disconnected(self, context: AppContext, session: ServerSession) -> None:
        """The last websocket of a session closed: discard it after a short grace period."""
        if session.connections or session.destroyed:
            return
        delay = self.settings.disconnected_session_lifetime / 1000
        loop = asyncio.get_running_loop()
        if session.release_timer is not None:
            session.release_timer.cancel()
        session.release_timer = loop.call_later(delay, self._start_release, context, session)

    def _start_release(self, context: AppContext, session: ServerSession) -> None:
        task = asyncio.get_running_loop().create_task(self._release(context, session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, context: AppContext, session: ServerSession) -> None:
        session.release_timer = None
        if session.connections or session.destroyed:
            return
        if session.expiration_blocked:  # busy in a callback: look again later
            self.session_disconnected(context, session)
            return
        try:
            await context.discard_session(session)
        except Exception:
            log.exception("app %s, session %s: discarding failed", context.name, session.id)
        self.collect_soon()

    def collect_soon(self) -> None:
        """Coalesce the garbage collections of many discards into one, a moment later."""
        if self._collect_timer is None:
            loop = asyncio.get_running_loop()
            when = max(loop.time() + COLLECT_DELAY, self._next_collect_at)
            self._collect_timer = loop.call_at(when, self._collect)

    def _collect(self) -> None:
        self._collect_timer = None
        start = time.perf_counter()
        release_memory()
        took = time.perf_counter() - start
        self._next_collect_at = asyncio.get_running_loop().time() + took * COLLECT_SPACING

    async def _reap(self) -> None:
        interval = self.settings.check_unused_sessions / 1000
        lifetime = self.settings.unused_session_lifetime / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_once(lifetime)
            except Exception:
                log.exception("discarding unused sessions failed")

    async def reap_once(self, lifetime: float) -> int:
        """Discard sessions unused for ``lifetime`` seconds; one full GC for the whole pass."""
        discarded = 0
        for context in self.contexts.values():
            discarded += await context.cleanup_sessions(lifetime)
        if discarded:
            self.collect_soon()  # one collection for every discard around now
            log.debug("discarded %d unused sessions", discarded)
        return discarded
