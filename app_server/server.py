"""The state of one running server: settings, app contexts, executor, metrics, the reaper,
and what the process holds on the server's behalf (memory policy, page caches)."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from bokeh.util.paths import bokehjs_path
from jinja2 import Environment, PackageLoader, select_autoescape

from ._bokeh.curdoc import use_thread_local_curdoc
from .auth import AuthProvider, load_auth_module
from .connection import ConnectionState
from .contexts import AppContext
from .logs import follow_host_logging
from .memory import MemoryReclaimer
from .metrics import Metrics, multiprocess_directory
from .protocol import CloseCode
from .resources import PageBundles, StaticVersions
from .timing import CallbackTimer, LoopLagProbe

if TYPE_CHECKING:
    from bokeh.application import Application

    from .connection import Connection
    from .settings import Settings

__all__ = ["AppServer", "ServerState"]

log = logging.getLogger("app_server.server")

SHUTDOWN_TIMEOUT = 10.0
_ENDING = (ConnectionState.CLOSING, ConnectionState.CLOSED)
SETTLE_TIMEOUT = 5.0  # seconds a websocket opened just before the drain may take to pull its doc


def _auth_provider(settings: Settings) -> AuthProvider:
    secret = settings.cookie_secret.get_secret_value() if settings.cookie_secret else None
    if settings.auth_module:
        return load_auth_module(settings.auth_module, secret)
    return AuthProvider(cookie_secret=secret)


class Arrival:
    """A websocket being admitted, among ``arrivals`` while its ``with`` block runs;
    ``connection`` once it has one."""

    __slots__ = ("arrivals", "connection")

    def __init__(self, arrivals: set[Arrival]) -> None:
        self.arrivals = arrivals
        self.connection: Connection | None = None

    def __enter__(self) -> Arrival:
        self.arrivals.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.arrivals.discard(self)

    @property
    def settled(self) -> bool:
        """Its client has the session's document (BokehJS then reconnects if closed), or it
        is closing anyway."""
        c = self.connection
        return c is not None and (c.synced or c.state in _ENDING)


class ServerState(enum.Enum):
    NEW = "new"
    STARTED = "started"
    STOPPED = "stopped"


class AppServer:
    """Everything ``create_app`` builds, passed explicitly to every view."""

    def __init__(self, applications: dict[str, Application], settings: Settings) -> None:
        use_thread_local_curdoc()  # bokeh 3.9: curdoc() per thread; idempotent, no-op on 3.10
        self.settings = settings
        self.metrics = Metrics(multiprocess_directory())
        self.timer = CallbackTimer(self.metrics, settings.slow_callback_threshold / 1000)
        self.loop_probe = LoopLagProbe(
            self.metrics,
            self.timer.threshold,
            self.sync_metrics if self.metrics.multiprocess_dir else None,
        )
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
                timer=self.timer,
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
        self.stopping = False  # told to stop: /readyz answers 503, everything else is served
        self.draining = False  # shutting down: new websockets are refused
        self.arrivals: set[Arrival] = set()  # websockets being admitted or opened
        self._start_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Serving: started, and not yet shutting down (what /readyz reports)."""
        return self.state is ServerState.STARTED and not (self.stopping or self.draining)

    def arrival(self) -> Arrival:
        """Track a websocket from its handshake on (``with``), so the drain can let it settle
        first. Not a generator-based context manager: this one is held for the websocket's
        life, and a generator's frame is three times its size."""
        return Arrival(self.arrivals)

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until every websocket still arriving has its session's document, so a page
        whose socket was accepted just before the listener closed is not failed by the 1001
        that follows: BokehJS reconnects a session it has, and gives up on one it has not."""
        deadline = time.monotonic() + timeout
        while not all(arrival.settled for arrival in self.arrivals):
            if time.monotonic() > deadline:
                log.warning(
                    "%d websockets had not pulled their document after %.0f s; closing them",
                    sum(not arrival.settled for arrival in self.arrivals),
                    timeout,
                )
                return False
            await asyncio.sleep(0.02)
        return True

    def _gauges(self) -> tuple[dict[str, int], int]:
        open_sessions = {name: len(c.sessions) for name, c in self.contexts.items()}
        return open_sessions, sum(connection.backlog for connection in self.connections)

    def render_metrics(self) -> str:
        """The Prometheus text of /metrics (every worker's, summed, with several)."""
        return self.metrics.render(*self._gauges())

    def sync_metrics(self) -> None:
        """Hand this process's counters to the workers' shared metrics."""
        self.metrics.sync(*self._gauges())

    async def startup(self) -> None:
        """Run every app's ``on_server_loaded`` and start the reaper, once."""
        async with self._start_lock:
            if self.state is not ServerState.NEW:
                return
            follow_host_logging()  # under uvicorn module:app or gunicorn, our lines show too
            for context in self.contexts.values():
                await context.on_server_loaded()
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
            self.loop_probe.start()
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
        self.loop_probe.stop()
        await self.drain()
        for context in self.contexts.values():
            try:
                await asyncio.wait_for(context.discard_all(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.error("app %s: discarding sessions timed out", context.name)
            await context.on_server_unloaded()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics.multiprocess_dir:
            self.sync_metrics()  # the last counts of a worker that stops
        self.memory.stop()
        log.info("app_server stopped")

    async def drain(self) -> bool:
        """Refuse new websockets and close the open ones with 1001 (going away); whether
        every one closed in time.

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
                return False
        return True

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
