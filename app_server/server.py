"""The state of one running server: settings, app contexts, executor, metrics, the reaper,
and what the process holds on the server's behalf (memory policy, page caches)."""

from __future__ import annotations

import asyncio
import enum
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from bokeh.util.paths import bokehjs_path
from jinja2 import Environment, PackageLoader, select_autoescape

from ._bokeh.curdoc import use_thread_local_curdoc
from .auth import AuthProvider, load_auth_module
from .contexts import AppContext
from .memory import MemoryReclaimer
from .metrics import Metrics
from .protocol import CloseCode
from .resources import PageBundles, StaticVersions

if TYPE_CHECKING:
    from bokeh.application import Application

    from .connection import Connection
    from .settings import Settings

__all__ = ["AppServer", "ServerState"]

log = logging.getLogger("app_server.server")

SHUTDOWN_TIMEOUT = 10.0


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
        use_thread_local_curdoc()  # bokeh 3.9: curdoc() per thread; idempotent, no-op on 3.10
        self.settings = settings
        self.metrics = Metrics()
        self.auth = _auth_provider(settings)
        self.executor = ThreadPoolExecutor(settings.num_threads, thread_name_prefix="app_server")
        logout_url = self.auth.logout_url
        if logout_url and logout_url.startswith("/"):
            logout_url = settings.prefix + logout_url
        self.memory = MemoryReclaimer(settings.manage_process_memory)
        self.contexts = {
            route: AppContext(
                route,
                application,
                executor=self.executor,
                metrics=self.metrics,
                logout_url=logout_url,
                disconnected_lifetime=settings.disconnected_session_lifetime / 1000,
                on_discarded=self.memory.collect_soon,
            )
            for route, application in applications.items()
        }
        self.connections: set[Connection] = set()  # open websockets, for the shutdown
        self.static_versions = StaticVersions(bokehjs_path())
        self.page_bundles = PageBundles()
        self.templates = Environment(
            loader=PackageLoader("app_server", "templates"), autoescape=select_autoescape()
        )
        self.state = ServerState.NEW
        self.draining = False  # shutting down: new websockets are refused
        self._start_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Serving: started, and not yet shutting down (what /readyz reports)."""
        return self.state is ServerState.STARTED and not self.draining

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
            self.memory.start()
            self.state = ServerState.STARTED
            log.info("app_server started: %s", ", ".join(sorted(self.contexts)))

    async def shutdown(self) -> None:
        """Close websockets (1001), discard sessions, run unload hooks, stop threads."""
        if self.state is not ServerState.STARTED:
            return
        self.state = ServerState.STOPPED
        if self._reaper is not None:
            self._reaper.cancel()
        await self.drain()
        for context in self.contexts.values():
            try:
                await asyncio.wait_for(context.discard_all(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.error("app %s: discarding sessions timed out", context.name)
            await context.on_server_unloaded()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.memory.stop()
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
        """Discard sessions unused for ``lifetime`` seconds; how many were."""
        discarded = 0
        for context in self.contexts.values():
            discarded += await context.cleanup_sessions(lifetime)
        if discarded:
            log.debug("discarded %d unused sessions", discarded)
        return discarded
