"""What an idle session costs a server in memory, by component (tracemalloc).

::

    python -m bench.breakdown [-n 100] [--warmup 10] [--server app_server|bokeh]
                              [--app small|heavy] [--compression] [--top K] [--json PATH]
                              [--waves W]

It starts the server (``app-server serve`` or ``bokeh serve``) on a loopback port through
``bench/traced_launcher.py``, turns tracemalloc on in it once it is up (tracing the imports
would make a run five times as long), opens the warm-up sessions, snapshots, opens N more
sessions as the load generator does (page GET, websocket, ACK, PULL-DOC; ``bench/client.py``),
snapshots again with all of them still open, and prints the difference per session in KB:
per component, the total, and the total above the document (what the server adds to the app's
own models). ``--compression`` turns permessage-deflate on in the server (app_server's
``--websocket-compression``, bokeh's ``--websocket-compression-level 6``) and the client
offers it. The server runs slower under tracemalloc: the figures are memory only.

An allocation is charged to the innermost frame of its traceback that belongs to a component,
so the standard library (asyncio, json, zlib) counts for whoever called it. The document is
every other bokeh module (models, properties, serialization), numpy, and the app script; other
is what has no component frame in its traceback (``--frames`` deep). Memory allocated before
tracing started and freed during the run is not seen: the warm-up sessions, traced, take
the first-session churn (lazy imports, caches) out of the figures.

``--waves W`` measures what closed sessions leave behind instead: after a warm-up wave, W waves
of N sessions are opened, closed and discarded (the server reaps them within a second), and
the difference is divided by N x W: the growth per session per wave, exact where RSS (the
bench's memory workload) moves by pages with the allocator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import bokeh

from .client import BenchSession
from .servers import (
    APPS_DIR,
    ROOT,
    ServerProcess,
    free_port,
    start,
    stop,
    wait_until_up,
    with_root_on_path,
)
from .traced_launcher import snapshot_path, tracing_path

__all__ = ["COMPONENTS", "Breakdown", "breakdown", "main", "measure"]

COMPONENTS = (
    "uvicorn",
    "websockets",
    "starlette",
    "app_server",
    "tornado",
    "bokeh.server",
    "bokeh.protocol",
    "document",
    "other",
)
DOCUMENT = "document"

# (path marker, component), tried in order on each frame: bokeh's server and protocol
# packages before the rest of bokeh, which is the document.
_MARKERS = (
    ("/bokeh/server/", "bokeh.server"),
    ("/bokeh/protocol/", "bokeh.protocol"),
    ("/bokeh/", DOCUMENT),
    ("/numpy/", DOCUMENT),
    ("/app_server/", "app_server"),
    ("/uvicorn/", "uvicorn"),
    ("/websockets/", "websockets"),
    ("/starlette/", "starlette"),
    ("/tornado/", "tornado"),
)

SERVER_MODULES = {"app_server": "app_server.cli", "bokeh": "bokeh"}
COMPRESSION = {
    "app_server": ["--websocket-compression"],
    "bokeh": ["--websocket-compression-level", "6"],
}
SETTLE_S = 1.0  # after the last session, before a snapshot: the last replies are written
# for --waves: closed sessions are discarded within a second, by both servers
REAPING = ["--check-unused-sessions", "100", "--unused-session-lifetime", "300"]
REAPING_APP_SERVER = ["--disconnected-session-lifetime", "300"]
DISCARD_S = 2.5  # after a wave has closed, before the next one: its sessions are discarded


# -- the server under tracemalloc -----------------------------------------------------------------


def server_command(
    server: str,
    app: Path,
    port: int,
    snapshots: Path,
    frames: int,
    compression: bool,
    reaping: bool = False,
) -> list[str]:
    """The server's own ``serve`` command line, run by the traced launcher."""
    launcher = [sys.executable, "-m", "bench.traced_launcher", "--frames", str(frames)]
    serve = ["serve", str(app), "--port", str(port), "--address", "127.0.0.1"]
    serve += ["--log-level", "warning"]
    if compression:
        serve += COMPRESSION[server]
    if reaping:
        serve += REAPING + (REAPING_APP_SERVER if server == "app_server" else [])
    return [*launcher, str(snapshots), SERVER_MODULES[server], *serve]


@contextlib.contextmanager
def traced_server(command: Sequence[str], port: int, label: str) -> Iterator[ServerProcess]:
    """Start the server and wait until it is up; stop it and delete its log however the block
    ends (the log's tail goes to stderr on an error)."""
    env = with_root_on_path()
    env.pop("BOKEH_ALLOW_WS_ORIGIN", None)
    server = start(command, port, env=env, cwd=ROOT, log_prefix="bench-breakdown-", label=label)
    try:
        wait_until_up(server, timeout=60)
        yield server
    except Exception:
        print(f"{label}'s log:\n{server.log()[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop(server)
        with contextlib.suppress(OSError):
            os.unlink(server.log_path)


async def _signal_and_wait(
    server: ServerProcess, signum: int, path: Path, timeout: float = 60.0
) -> Path:
    """Send ``signum`` to the server and wait until ``path`` exists."""
    os.kill(server.pid, signum)
    deadline = time.monotonic() + timeout
    while not path.exists():
        server.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.label} did not write {path.name} in {timeout}s")
        await asyncio.sleep(0.05)
    return path


async def take_snapshot(server: ServerProcess, snapshots: Path, index: int) -> Path:
    """Let the server settle, then have it dump snapshot ``index``; its path."""
    await asyncio.sleep(SETTLE_S)
    return await _signal_and_wait(server, signal.SIGUSR1, snapshot_path(snapshots, index))


async def _open(
    server: ServerProcess, app: str, count: int, deflate: bool, opened: list[BenchSession]
) -> None:
    """Open ``count`` sessions into ``opened``, one at a time: nothing transient is in flight
    at a snapshot."""
    for _ in range(count):
        session = await BenchSession.open(server.base_url, app, deflate=deflate)
        opened.append(session)
        await session.pull()


async def _close(opened: list[BenchSession]) -> None:
    for session in opened:
        with contextlib.suppress(Exception):
            await session.close()


async def measure(
    server: ServerProcess, app: str, snapshots: Path, sessions: int, warmup: int, deflate: bool
) -> tuple[Path, Path]:
    """Start tracing, open the warm-up sessions, snapshot, open ``sessions`` more, snapshot;
    all stay open until both snapshots are taken, so the difference is what idle sessions
    hold."""
    opened: list[BenchSession] = []
    try:
        await _signal_and_wait(server, signal.SIGUSR2, tracing_path(snapshots))
        await _open(server, app, warmup, deflate, opened)
        before = await take_snapshot(server, snapshots, 0)
        await _open(server, app, sessions, deflate, opened)
        after = await take_snapshot(server, snapshots, 1)
        return before, after
    finally:
        await _close(opened)


async def measure_waves(
    server: ServerProcess,
    app: str,
    snapshots: Path,
    sessions: int,
    waves: int,
    warmup: int,
    deflate: bool,
) -> tuple[Path, Path]:
    """Start tracing, run a warm-up wave, snapshot, run ``waves`` waves of ``sessions``
    (opened, closed, discarded), snapshot: the difference is what closed sessions left."""

    async def wave(count: int) -> None:
        opened: list[BenchSession] = []
        try:
            await _open(server, app, count, deflate, opened)
        finally:
            await _close(opened)
        await asyncio.sleep(DISCARD_S)

    await _signal_and_wait(server, signal.SIGUSR2, tracing_path(snapshots))
    await wave(max(warmup, 1))
    before = await take_snapshot(server, snapshots, 0)
    for _ in range(waves):
        await wave(sessions)
    after = await take_snapshot(server, snapshots, 1)
    return before, after


# -- the breakdown --------------------------------------------------------------------------------


@dataclass
class Breakdown:
    """Memory per session, in KB: by component and, within each, by allocation site."""

    sessions: int
    components: dict[str, float]
    sites: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def above_document(self) -> float:
        return self.total - self.components[DOCUMENT]


def _short(filename: str) -> str:
    """A file's path from its package: after site-packages/ or the repository root."""
    for anchor in ("/site-packages/", f"{ROOT}/"):
        if anchor in filename:
            return filename.split(anchor, 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/", "", filename)  # the standard library


def attribute(traceback: tracemalloc.Traceback, app: str) -> tuple[str, str]:
    """The component an allocation counts for, and its site (``file:line``) in it: from the
    innermost frame that belongs to a component, else other at the innermost frame."""
    for frame in reversed(traceback):  # tracemalloc lists the innermost frame last
        if frame.filename == app:
            return DOCUMENT, f"{_short(frame.filename)}:{frame.lineno}"
        for marker, component in _MARKERS:
            if marker in frame.filename:
                return component, f"{_short(frame.filename)}:{frame.lineno}"
    innermost = traceback[-1]
    return "other", f"{_short(innermost.filename)}:{innermost.lineno}"


def breakdown(
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    sessions: int,
    app: Path,
    top: int = 0,
) -> Breakdown:
    """What ``after`` holds beyond ``before``, per session, by component (and their ``top``
    sites)."""
    by_component = dict.fromkeys(COMPONENTS, 0)
    by_site: dict[tuple[str, str], int] = {}
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff:
            component, site = attribute(stat.traceback, str(app))
            by_component[component] += stat.size_diff
            by_site[component, site] = by_site.get((component, site), 0) + stat.size_diff
    per_session = 1024 * sessions
    result = Breakdown(sessions, {c: size / per_session for c, size in by_component.items()})
    for component in COMPONENTS if top else ():
        ranked = sorted(
            ((site, size) for (c, site), size in by_site.items() if c == component),
            key=lambda item: -item[1],
        )
        result.sites[component] = [(site, size / per_session) for site, size in ranked[:top]]
    return result


def format_breakdown(result: Breakdown, title: str, waves: int = 0) -> str:
    if waves:
        per = result.sessions // waves
        heading = f"left per session per wave, KB ({waves} waves of {per} closed sessions):"
    else:
        heading = f"per idle session, KB ({result.sessions} sessions):"
    lines = [title, heading]
    for component, kb in result.components.items():
        lines.append(f"  {component:16s} {kb:8.2f}")
    lines.append(f"  {'total':16s} {result.total:8.2f}")
    lines.append(f"  {'above document':16s} {result.above_document:8.2f}")
    for component, sites in result.sites.items():
        if sites:
            lines.append(f"{component}, largest sites:")
            lines += [f"  {kb:8.2f}  {site}" for site, kb in sites]
    return "\n".join(lines)


# -- the command line -----------------------------------------------------------------------------


def _exit_on_sigterm() -> None:
    """SIGTERM ends the run as Ctrl-C does: the server is stopped and the files deleted."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> Breakdown:
    """Serve the app traced, measure, and break the difference down."""
    app = APPS_DIR / f"{args.app}.py"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as tmp:
        snapshots = Path(tmp)
        command = server_command(
            args.server, app, port, snapshots, args.frames, args.compression, bool(args.waves)
        )
        with traced_server(command, port, label=args.server) as server:
            if args.waves:
                measured = measure_waves(
                    server, args.app, snapshots, args.n, args.waves, args.warmup, args.compression
                )
            else:
                measured = measure(
                    server, args.app, snapshots, args.n, args.warmup, args.compression
                )
            before, after = asyncio.run(measured)
        return breakdown(
            tracemalloc.Snapshot.load(str(before)),
            tracemalloc.Snapshot.load(str(after)),
            args.n * max(args.waves, 1),
            app,
            args.top,
        )


def _json(result: Breakdown, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "server": args.server,
        "app": args.app,
        "compression": args.compression,
        "warmup": args.warmup,
        "waves": args.waves,
        "frames": args.frames,
        "python": platform.python_version(),
        "bokeh": bokeh.__version__,
        **asdict(result),
        "total": result.total,
        "above_document": result.above_document,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown")
    parser.add_argument("-n", type=int, default=100, help="measured sessions")
    parser.add_argument("--warmup", type=int, default=10, help="sessions opened before")
    parser.add_argument("--server", default="app_server", choices=sorted(SERVER_MODULES))
    parser.add_argument("--app", default="small", choices=["small", "heavy"])
    parser.add_argument("--compression", action="store_true", help="permessage-deflate")
    parser.add_argument("--top", type=int, default=0, metavar="K", help="K sites per component")
    parser.add_argument(
        "--frames", type=int, default=12, help="traceback depth (deeper: slower, other ~0 already)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--waves", type=int, default=0, metavar="W", help="what W waves of N closed sessions leave"
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.waves < 0:
        parser.error("-n must be at least 1, --warmup and --waves at least 0")
    result = run(args)
    compression = "on" if args.compression else "off"
    title = f"{args.server}, {args.app}.py, compression {compression}, Python "
    title += f"{platform.python_version()}, bokeh {bokeh.__version__}"
    print(format_breakdown(result, title, args.waves))
    if args.json:
        args.json.write_text(json.dumps(_json(result, args), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    _exit_on_sigterm()
    sys.exit(main())
