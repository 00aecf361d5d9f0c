"""Prometheus metrics with ``prometheus_client``, adding up across worker processes.

The hot path bumps plain integers (a websocket frame costs one ``+=``); :meth:`Metrics.sync`
copies them into ``prometheus_client`` metrics when ``/metrics`` is scraped, and, with several
workers, every half second (:mod:`app_server.timing`'s probe), so a scrape answered by one
worker shows every worker's values at most that old. Histograms are observed directly.

One process: each ``AppServer`` has its own ``CollectorRegistry`` (two apps in one process
share no counters). Several workers (``PROMETHEUS_MULTIPROC_DIR`` set before the process
started, as ``app-server serve --num-procs`` does for its workers and an operator does for
gunicorn or ``uvicorn --workers``): values live in that directory, one file per process, and a
scrape sums them; counters of a worker that died stay in the sums, so they never go back.
Per-process values (memory, CPU, open files, start time, event-loop lag) carry a ``pid`` label.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator

import bokeh
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from .exceptions import ConfigurationError

__all__ = [
    "CALLBACK_BUCKETS",
    "CONTENT_TYPE",
    "LAG_BUCKETS",
    "MULTIPROC_VARIABLE",
    "Metrics",
    "multiprocess_directory",
    "workers_directory",
]

log = logging.getLogger("app_server.metrics")

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
CALLBACK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def multiprocess_directory() -> str | None:
    """The directory the workers' values are shared in, or None in a single process.

    Checked once, where the server is built: ``prometheus_client`` decides when it is first
    imported whether values go to files, so a directory named later would be half used.
    """
    path = os.environ.get(MULTIPROC_VARIABLE)
    if not path:
        return None
    if not os.path.isdir(path):
        raise ConfigurationError(
            f"{MULTIPROC_VARIABLE}={path} is not a directory: create it (empty) before the "
            "workers start, or unset it for a single process"
        )
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ConfigurationError(
            f"{MULTIPROC_VARIABLE} was set after prometheus_client was imported: set it in the "
            "environment the server process starts with"
        )
    return path


@contextlib.contextmanager
def workers_directory() -> Iterator[str]:
    """For ``app-server serve --num-procs``: the operator's directory if one is set, else a
    private one made for the workers (they inherit the environment) and removed afterwards."""
    if os.environ.get(MULTIPROC_VARIABLE):
        yield os.environ[MULTIPROC_VARIABLE]
        return
    path = tempfile.mkdtemp(prefix="app-server-metrics-")
    os.environ[MULTIPROC_VARIABLE] = path
    log.info("the workers' metrics are summed in %s (removed at exit)", path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """The server's counters; one instance per ``AppServer``.

    The integer attributes are bumped on the hot path by the connections, views and contexts;
    ``render`` (or ``sync``) hands them to ``prometheus_client``.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.sessions_created: dict[str, int] = defaultdict(int)
        self.sessions_destroyed: dict[str, int] = defaultdict(int)
        self.websocket_opened = 0
        self.websocket_closed = 0
        self.websocket_refused = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.callback_errors = 0
        self.slow_clients_dropped = 0
        self._synced: dict[object, float] = defaultdict(float)  # what the counters were given
        self._pid = str(os.getpid())
        self._started = False  # the process's start time is set
        # one registry per server in one process; the shared files with several workers
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if multiprocess_dir else self.registry
        self._families = _Families(registry)
        from . import __version__  # the package's __init__ imports this module

        self._families.build_info.labels(
            app_server=__version__, bokeh=bokeh.__version__, python=platform.python_version()
        ).set(1)

    def observe_callback(self, seconds: float) -> None:
        """One run of a session callback held the event loop for ``seconds``."""
        self._families.callback_duration.observe(seconds)

    def slow_callback(self, app: str) -> None:
        self._families.slow_callbacks.labels(app).inc()

    def observe_loop_lag(self, seconds: float) -> None:
        self._families.loop_lag.labels(self._pid).observe(seconds)

    def sync(self, open_sessions: dict[str, int], backlog: int) -> None:
        """Copy the hot-path counters and the process's figures into the metrics."""
        f = self._families
        for app, count in open_sessions.items():
            f.sessions_open.labels(app).set(count)
        for app, count in list(self.sessions_created.items()):
            self._advance(f.sessions_created.labels(app), ("created", app), count)
        for app, count in list(self.sessions_destroyed.items()):
            self._advance(f.sessions_destroyed.labels(app), ("destroyed", app), count)
        f.websockets_open.set(self.websocket_opened - self.websocket_closed)
        self._advance(f.websockets_opened, "opened", self.websocket_opened)
        self._advance(f.websockets_refused, "refused", self.websocket_refused)
        self._advance(f.messages.labels("in"), "messages_in", self.messages_in)
        self._advance(f.messages.labels("out"), "messages_out", self.messages_out)
        self._advance(f.bytes.labels("in"), "bytes_in", self.bytes_in)
        self._advance(f.bytes.labels("out"), "bytes_out", self.bytes_out)
        self._advance(f.callback_errors, "errors", self.callback_errors)
        self._advance(f.slow_clients, "slow_clients", self.slow_clients_dropped)
        f.backlog.set(backlog)
        if not self._started:  # at the first sync: a supervisor that built the app never syncs
            f.start_time.labels(self._pid).set(_process_start_time())
            self._started = True
        rss, fds, cpu = _process_figures()
        f.resident_memory.labels(self._pid).set(rss)
        f.open_fds.labels(self._pid).set(fds)
        self._advance(f.cpu_seconds.labels(self._pid), "cpu", cpu)

    def _advance(self, counter: Counter, key: object, total: float) -> None:
        delta = total - self._synced[key]
        if delta > 0:
            counter.inc(delta)
            self._synced[key] = total

    def render(self, open_sessions: dict[str, int], backlog: int) -> str:
        """The exposition text: this server's metrics, or every worker's summed."""
        self.sync(open_sessions, backlog)
        if self.multiprocess_dir is None:
            return generate_latest(self.registry).decode()
        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry).decode()


class _Families:
    """The metric families, registered in ``registry`` (None: the workers' shared files)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.sessions_open = Gauge(
            "app_server_sessions_open", "Sessions held now.", ["app"],
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.sessions_created = Counter(
            "app_server_sessions_created", "Sessions created.", ["app"], registry=r
        )
        self.sessions_destroyed = Counter(
            "app_server_sessions_destroyed", "Sessions discarded.", ["app"], registry=r
        )
        self.websockets_open = Gauge(
            "app_server_websockets_open", "Open websocket connections.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.websockets_opened = Counter(
            "app_server_websockets_opened", "Websocket connections accepted.", registry=r
        )
        self.websockets_refused = Counter(
            "app_server_websockets_refused",
            "Websocket handshakes refused (origin, token, session).",
            registry=r,
        )
        self.messages = Counter(
            "app_server_messages", "Protocol messages by direction.", ["direction"], registry=r
        )
        self.bytes = Counter(
            "app_server_bytes", "Websocket payload bytes by direction.", ["direction"], registry=r
        )
        self.callback_errors = Counter(
            "app_server_callback_errors", "Callbacks that raised.", registry=r
        )
        self.slow_clients = Counter(
            "app_server_slow_clients_dropped",
            "Connections closed because their outbound queue was full.",
            registry=r,
        )
        self.backlog = Gauge(
            "app_server_outbound_backlog_messages",
            "Messages queued for clients, summed over connections.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.callback_duration = Histogram(
            "app_server_callback_duration_seconds",
            "Time session callbacks held the event loop, one observation per run.",
            registry=r, buckets=CALLBACK_BUCKETS,
        )  # fmt: skip
        self.slow_callbacks = Counter(
            "app_server_slow_callbacks",
            "Session callbacks that held the event loop longer than --slow-callback-threshold.",
            ["app"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "app_server_event_loop_lag_seconds",
            "How late the event loop woke a periodic probe: time it was held by other work.",
            ["pid"],
            registry=r, buckets=LAG_BUCKETS,
        )  # fmt: skip
        self.build_info = Gauge(
            "app_server_build_info", "Versions of app_server, Bokeh and Python (always 1).",
            ["app_server", "bokeh", "python"], registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.resident_memory = Gauge(
            "process_resident_memory_bytes", "Resident memory of each worker process.",
            ["pid"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.open_fds = Gauge(
            "process_open_fds", "Open file descriptors of each worker process.",
            ["pid"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.start_time = Gauge(
            "process_start_time_seconds", "Start of each worker process, in Unix time.",
            ["pid"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.cpu_seconds = Counter(
            "process_cpu_seconds", "User and system CPU time of each worker process.",
            ["pid"], registry=r,
        )  # fmt: skip


def _forget_dead_workers(path: str) -> None:
    """Drop the live gauges (sessions open, memory...) of workers that no longer run; their
    counters stay in the sums. Needs no hook in the supervisor (uvicorn has none)."""
    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = re.search(r"_(\d+)\.db$", name)
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_IMPORTED_AT = time.time()


def _process_figures() -> tuple[float, int, float]:
    """Resident bytes, open file descriptors, CPU seconds of this process (Linux's /proc)."""
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * _PAGE_SIZE
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        rss, fds = 0, 0
    times = os.times()
    return float(rss), fds, times.user + times.system


def _process_start_time() -> float:
    """When this process started, in Unix time (from /proc; else when app_server was imported)."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = float(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as proc_stat:
            boot = next(float(line.split()[1]) for line in proc_stat if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return _IMPORTED_AT
