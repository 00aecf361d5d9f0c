"""The state of one running server: settings, app contexts, executor and the reaper."""

from __future__ import annotations

import asyncio
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import HTTPConnection

from .contexts import AppContext
from .protocol import CloseCode

if TYPE_CHECKING:
    from bokeh.application import Application

    from .connection import Connection
    from .settings import Settings

__all__ = ["AppServer"]

log = logging.getLogger("app_server.server")

SHUTDOWN_TIMEOUT = 10.0


class AppServer:
    """Everything ``create_app`` builds, passed explicitly to every view."""

    def __init__(self, applications: dict[str, Application], settings: Settings) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(settings.num_threads, thread_name_prefix="app_server")
        self.contexts = {
            route: AppContext(route, application, executor=self.executor)
            for route, application in applications.items()
        }
        self.connections: set[Connection] = set()
        self.templates = Environment(
            loader=PackageLoader("app_server", "templates"), autoescape=select_autoescape()
        )
        self.started = False
        self._start_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    def public_host(self, conn: HTTPConnection) -> str | None:
        """The host the client addressed (X-Forwarded-Host with --use-xheaders)."""
        if self.settings.use_xheaders and "x-forwarded-host" in conn.headers:
            return conn.headers["x-forwarded-host"].split(",")[0].strip()
        return conn.headers.get("host")

    async def startup(self) -> None:
        """Run every app's ``on_server_loaded`` and start the reaper, once."""
        async with self._start_lock:
            if self.started:
                return
            for context in self.contexts.values():
                await context.on_server_loaded()
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
            self.started = True
            log.info("app_server started: %s", ", ".join(sorted(self.contexts)))

    async def shutdown(self) -> None:
        """Close websockets (1001), discard sessions, run unload hooks, stop threads."""
        if not self.started:
            return
        self.started = False
        if self._reaper is not None:
            self._reaper.cancel()
        closing = [c.close(CloseCode.GOING_AWAY, "server shutting down") for c in self.connections]
        if closing:
            await asyncio.wait_for(
                asyncio.gather(*closing, return_exceptions=True), SHUTDOWN_TIMEOUT
            )
        for context in self.contexts.values():
            try:
                await asyncio.wait_for(context.discard_all(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.error("app %s: discarding sessions timed out", context.name)
            await context.on_server_unloaded()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("app_server stopped")

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
            await asyncio.sleep(0)  # let the cancelled callback tasks finish and drop their refs
            gc.collect()
            log.debug("discarded %d unused sessions", discarded)
        return discarded
