"""Real servers for tests: ``app-server serve`` (or ``bokeh serve``) in a subprocess on loopback,
or an ASGI app under uvicorn in the test's own event loop (:func:`uvicorn_in_loop`).

The process handling is the bench's (:mod:`bench.servers`), shared with ``python -m fuzz``; this
module adds what tests want of it: the app_server and ``bokeh serve`` command lines, and a check,
once a server has stopped, that its log shows no lost coroutine or task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from bench.servers import ServerProcess, free_port, rss_mb, serving

__all__ = [
    "RunningServer",
    "free_port",
    "rss_mb",
    "run_app_server",
    "run_bokeh_serve",
    "uvicorn_in_loop",
]

RunningServer = ServerProcess  # url (with the --prefix), port, process, log(), wait_for_log()

# lines no server run may log: they mean a coroutine or task was lost
_NEVER = ("was never awaited", "Task was destroyed but it is pending", "Task exception was never")


@contextlib.asynccontextmanager
async def uvicorn_in_loop(app: Any, **config: Any) -> AsyncIterator[int]:
    """``app`` served by uvicorn in this event loop on a free loopback port, which it yields."""
    options = {"host": "127.0.0.1", "port": 0, "log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.contextmanager
def _run(
    command: list[str], port: int, env: dict[str, str] | None, prefix: str
) -> Iterator[RunningServer]:
    """Any server command listening on ``port``; ``env`` is added to ours."""
    with serving(command, port, env={**os.environ, **(env or {})}, prefix=prefix) as server:
        yield server
    problems = [line for line in server.log().splitlines() if any(p in line for p in _NEVER)]
    assert not problems, f"the server logged: {problems}"


@contextlib.contextmanager
def run_app_server(
    *paths: str | Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    prefix: str = "",
    port: int | None = None,
) -> Iterator[RunningServer]:
    """``app-server serve`` on ``port`` (default: a free one)."""
    port = port or free_port()
    command = [sys.executable, "-m", "app_server.cli", "serve", *map(str, paths)]
    command += ["--port", str(port), "--log-level", "debug", *args]
    if prefix:
        command += ["--prefix", prefix]
    with _run(command, port, env, prefix) as server:
        yield server


@contextlib.contextmanager
def run_bokeh_serve(
    *paths: str | Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Bokeh's own Tornado server, for side-by-side checks."""
    port = free_port()
    command = [sys.executable, "-m", "bokeh", "serve", *map(str, paths), "--port", str(port), *args]
    with _run(command, port, env, "") as server:
        yield server
