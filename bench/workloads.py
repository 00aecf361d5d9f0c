"""The workloads: each drives one running server and returns its figures as a flat dict.

Server CPU is the delta of the server process's CPU clock around the workload (after the
server has gone quiet again where the workload leaves work behind, such as discarding
sessions); memory is VmRSS from /proc/<pid>/status. The client's own CPU is reported too
(``client_busy``: share of one core), to show that the load source is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app_server import protocol

from .client import BenchSession, find_model_id
from .servers import RunningServer

__all__ = [
    "FanoutLevel",
    "Reaping",
    "fan_out",
    "memory_waves",
    "percentile",
    "round_trip",
    "scale",
    "session_creation",
]

STREAM_HZ = 20.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Reaping:
    """How the servers were started: unused sessions are discarded after about ``wait`` s."""

    check_ms: int
    lifetime_ms: int

    @property
    def wait(self) -> float:
        return (self.check_ms + self.lifetime_ms) / 1000 + 0.15


async def settle(server: RunningServer, min_wait: float, max_wait: float = 10.0) -> None:
    """Wait ``min_wait`` s, then until the server is quiet for 0.25 s (at most ``max_wait``):
    under 15 ms of CPU in those 250 ms, more than the idle server's own timers cost."""
    await asyncio.sleep(max(0.0, min_wait))
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(0.25)
        if server.cpu_seconds() - before < 0.015:
            return


async def settle_reaped(server: RunningServer, reaping: Reaping) -> None:
    """Settle once the sessions closed last on ``server`` have had time to be discarded.

    That is the check interval and the lifetime, plus the delay of the work the server
    defers after a discard (app_server collects garbage up to a second later).
    """
    wait = reaping.wait + server.kind.deferred_s
    await settle(server, server.closed_at + wait - time.monotonic())


async def open_sessions(
    server: RunningServer, app: str, count: int, concurrency: int, deflate: bool
) -> list[tuple[BenchSession, str]]:
    """``count`` sessions of ``app``, each past ACK and PULL-DOC: (session, document JSON)."""
    opened: list[tuple[BenchSession, str]] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            session = await BenchSession.open(server.base_url, app, deflate=deflate)
            opened.append((session, await session.pull()))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return opened


async def close_all(sessions: Sequence[BenchSession], server: RunningServer) -> None:
    """Close the websockets; the server will discard their sessions after its lifetime."""
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    server.closed_at = time.monotonic()


class _ClientCpu:
    def __init__(self) -> None:
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def busy(self) -> float:
        """The client's CPU since creation, as a share of one core."""
        return (time.process_time() - self.cpu) / max(time.perf_counter() - self.wall, 1e-9)


# -- session creation -----------------------------------------------------------------------


async def session_creation(
    server: RunningServer,
    n: int,
    concurrency: int,
    reaping: Reaping,
    *,
    app: str = "small",
    deflate: bool = True,
) -> dict[str, float]:
    """Page GET + websocket + ACK + PULL-DOC + close, ``n`` times, ``concurrency`` at once.

    The CPU window ends once the server has discarded the sessions and gone quiet, so the
    cost of discarding a session (bokeh's per-session full GC) is counted.
    """
    latencies: list[float] = []
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            session = await BenchSession.open(server.base_url, app, deflate=deflate)
            await session.pull()
            await session.close()
            latencies.append(time.perf_counter() - start)

    await settle_reaped(server, reaping)
    cpu0 = server.cpu_seconds()
    client = _ClientCpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - client.wall
    busy = client.busy()
    server.closed_at = time.monotonic()
    await settle_reaped(server, reaping)
    cpu = server.cpu_seconds() - cpu0
    return {
        "sessions_per_s": n / wall,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "cpu_per_session_ms": cpu / n * 1000,
        "client_busy": busy,
    }


# -- round trip -----------------------------------------------------------------------------


async def round_trip(
    server: RunningServer,
    k: int,
    moves: int,
    reaping: Reaping,
    *,
    concurrency: int = 4,
    deflate: bool = True,
) -> dict[str, float]:
    """``k`` sessions at once each move the slider ``moves`` times, one move at a time.

    A move is a PATCH-DOC (ModelChanged of the slider's value); it is complete when the
    PATCH-DOC carrying the callback's ``div.text = "value=<v>"`` arrives.
    """
    opened = await open_sessions(server, "small", k, concurrency, deflate)
    sessions = [s for s, _ in opened]
    sliders = [find_model_id(doc, "Slider") for _, doc in opened]
    await settle_reaped(server, reaping)  # earlier sessions discarded, these ones idle
    latencies: list[float] = []

    async def mover(index: int) -> None:
        session, slider = sessions[index], sliders[index]
        for move in range(moves):
            value = float(index * 1_000_000 + move + 2)
            marker = f'"value={value}"'
            event = {"kind": "ModelChanged", "model": {"id": slider}, "attr": "value", "new": value}
            start = time.perf_counter()
            await session.send(protocol.PATCH_DOC, {"events": [event]})
            while True:
                header, content = await session.receive()
                if header["msgtype"] == protocol.PATCH_DOC and marker in content:
                    break
            latencies.append(time.perf_counter() - start)

    cpu0, wakeups0 = server.cpu_seconds(), server.wakeups()
    client = _ClientCpu()
    await asyncio.gather(*(mover(i) for i in range(k)))
    wall = time.perf_counter() - client.wall
    busy = client.busy()
    await asyncio.sleep(0.1)  # the OK replies that trail the last patches
    cpu = server.cpu_seconds() - cpu0
    wakeups = server.wakeups() - wakeups0
    await close_all(sessions, server)
    total = k * moves
    return {
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "patches_per_s": total / wall,
        "cpu_per_patch_ms": cpu / total * 1000,
        "wakeups_per_patch": wakeups / total,
        "client_busy": busy,
    }


# -- fan-out --------------------------------------------------------------------------------


class _StreamReader:
    """Reads one streaming session's messages; records PATCH-DOC arrivals while recording."""

    def __init__(self, session: BenchSession) -> None:
        self.session = session
        self.recording = False
        self.arrivals: list[float] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.session.ws
        try:
            while True:
                header = await ws.recv()
                await ws.recv()
                await ws.recv()
                if '"num_buffers"' in header:
                    for _ in range(2 * int(json.loads(header).get("num_buffers", 0))):
                        await ws.recv()
                if self.recording and '"PATCH-DOC"' in header:
                    self.arrivals.append(time.perf_counter())
        except Exception:  # closed
            return


@dataclass
class FanoutLevel:
    k: int
    delivered_ratio: float
    p99_interarrival_ms: float
    cpu_per_message_ms: float
    wakeups_per_message: float
    client_busy: float
    holds: bool = field(default=False)


async def _measure_level(
    server: RunningServer, readers: list[_StreamReader], duration: float
) -> FanoutLevel:
    for reader in readers:
        reader.arrivals = []
        reader.recording = True
    cpu0, wakeups0 = server.cpu_seconds(), server.wakeups()
    client = _ClientCpu()
    await asyncio.sleep(duration)
    for reader in readers:
        reader.recording = False
    wall = time.perf_counter() - client.wall
    busy = client.busy()
    cpu = server.cpu_seconds() - cpu0
    wakeups = server.wakeups() - wakeups0
    delivered = sum(len(r.arrivals) for r in readers)
    gaps = [b - a for r in readers for a, b in zip(r.arrivals, r.arrivals[1:], strict=False)]
    ratio = delivered / (len(readers) * STREAM_HZ * wall)
    level = FanoutLevel(
        k=len(readers),
        delivered_ratio=ratio,
        p99_interarrival_ms=percentile(gaps, 99) * 1000,
        cpu_per_message_ms=cpu / max(delivered, 1) * 1000,
        wakeups_per_message=wakeups / max(delivered, 1),
        client_busy=busy,
    )
    level.holds = ratio >= 0.95
    return level


async def fan_out(
    server: RunningServer,
    base_k: int,
    duration: float,
    reaping: Reaping,
    *,
    sweep: Sequence[int] = (),
    sweep_duration: float = 2.0,
    sweep_budget: float = 60.0,
    concurrency: int = 4,
    deflate: bool = True,
) -> tuple[dict[str, float], list[FanoutLevel]]:
    """Sessions of the streaming app (a 50 ms periodic callback each) read at full speed.

    The figures at ``base_k`` sessions are measured for ``duration`` s. Then, for each K
    of ``sweep`` (increasing), sessions are added up to K and measured for
    ``sweep_duration`` s (twice if it fails), until the delivered rate falls under 95% of
    the ideal one or ``sweep_budget`` s have passed; ``largest_k`` is the last K that held
    (a lower bound when ``largest_k_capped`` is 1: the sweep stopped while still holding).
    """
    readers: list[_StreamReader] = []

    async def grow(k: int) -> None:
        opened = await open_sessions(server, "stream", k - len(readers), concurrency, deflate)
        readers.extend(_StreamReader(s) for s, _ in opened)
        await asyncio.sleep(0.3)

    await settle_reaped(server, reaping)
    try:
        await grow(base_k)
        base = await _measure_level(server, readers, duration)
        if sweep and not base.holds:  # once more before the sweep starts from nothing
            base = await _measure_level(server, readers, duration)
        figures: dict[str, float] = {
            "delivered_pct": base.delivered_ratio * 100,
            "p99_interarrival_ms": base.p99_interarrival_ms,
            "cpu_per_message_ms": base.cpu_per_message_ms,
            "wakeups_per_message": base.wakeups_per_message,
            "client_busy": base.client_busy,
        }
        levels: list[FanoutLevel] = []
        if sweep:
            started = time.monotonic()
            largest = base_k if base.holds else 0
            failed = not base.holds
            for k in sweep:
                if failed or k <= len(readers):
                    continue
                if time.monotonic() - started > sweep_budget:
                    break
                await grow(k)
                level = await _measure_level(server, readers, sweep_duration)
                if not level.holds:  # once more, so that a passing hiccup is not the limit
                    levels.append(level)
                    level = await _measure_level(server, readers, sweep_duration)
                levels.append(level)
                if not level.holds:
                    failed = True
                    break
                largest = k
            figures["largest_k"] = largest
            # 1: a lower bound (the budget or the levels ran out while the rate still held)
            figures["largest_k_capped"] = 0.0 if failed else 1.0
        return figures, levels
    finally:
        for reader in readers:
            reader.task.cancel()
        await close_all([r.session for r in readers], server)


# -- scale ----------------------------------------------------------------------------------


async def _probe_lag(session: BenchSession, lags: list[float], stop: asyncio.Event) -> None:
    """SERVER-INFO-REQ round trips every 100 ms: the event loop's lag as a client sees it."""
    while not stop.is_set():
        started = time.perf_counter()
        await session.request(protocol.SERVER_INFO_REQ)
        lags.append(time.perf_counter() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def scale(
    server: RunningServer,
    sessions: int,
    duration: float,
    *,
    streamed_every: int = 10,
    concurrency: int = 16,
    deflate: bool = True,
) -> dict[str, float]:
    """``sessions`` concurrent sessions of the scale app, every ``streamed_every``-th one
    streaming at 20 updates/s: the time to open them all (``concurrency`` at a time, each past
    PULL-DOC), RSS per session, then for ``duration`` s the delivered rate of the streamed
    ones, the event loop's lag (a SERVER-INFO-REQ round trip every 100 ms on one more session)
    and the server's CPU."""
    rss0 = server.rss_bytes() / 1024
    cpu0 = server.cpu_seconds()
    client = _ClientCpu()
    opened: list[BenchSession] = []
    readers: list[_StreamReader] = []
    failures = 0
    remaining = iter(range(sessions))

    async def worker() -> None:
        nonlocal failures
        for n in remaining:
            streamed = n % streamed_every == 0
            try:
                session = await BenchSession.open(
                    server.base_url, "scale", deflate=deflate, query="stream=1" if streamed else ""
                )
                await session.pull()
            except Exception:
                failures += 1
                continue
            opened.append(session)
            if streamed:
                readers.append(_StreamReader(session))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        open_s = time.perf_counter() - started
        open_cpu = server.cpu_seconds() - cpu0
        await asyncio.sleep(1.0)
        rss1 = server.rss_bytes() / 1024
        probe = await BenchSession.open(server.base_url, "scale", deflate=deflate)
        lags: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.get_running_loop().create_task(_probe_lag(probe, lags, stop))
        window_cpu, window_wall = server.cpu_seconds(), time.perf_counter()
        level = await _measure_level(server, readers, duration)
        cores = (server.cpu_seconds() - window_cpu) / (time.perf_counter() - window_wall)
        stop.set()
        await prober
        await probe.close()
        held = sum(1 for session in opened if session.ws.state.name == "OPEN")
        return {
            "sessions": float(sessions),
            "held": float(held),
            "failed_opens": float(failures),
            "open_all_s": open_s,
            "sessions_per_s": len(opened) / open_s,
            "cpu_per_session_ms": open_cpu / max(len(opened), 1) * 1000,
            "rss_per_session_kb": (rss1 - rss0) / max(len(opened), 1),
            "streamed": float(len(readers)),
            "delivered_pct": level.delivered_ratio * 100,
            "cpu_per_message_ms": level.cpu_per_message_ms,
            "server_cores": cores,
            "lag_p50_ms": percentile(lags, 50) * 1000,
            "lag_p99_ms": percentile(lags, 99) * 1000,
            "client_busy": client.busy(),
        }
    finally:
        for reader in readers:
            reader.task.cancel()
        await close_all(opened, server)


# -- memory ---------------------------------------------------------------------------------


async def memory_waves(
    server: RunningServer,
    reaping: Reaping,
    *,
    k_small: int,
    k_heavy: int,
    waves: int = 8,
    concurrency: int = 1,
    deflate: bool = True,
) -> dict[str, Any]:
    """Idle sessions, then release and reuse, ``waves`` times over (on a fresh server, whose
    RSS before its first session is ``start_rss_mb``).

    Each wave opens ``k_small`` small sessions, then ``k_heavy`` heavy ones (all kept open),
    then closes them all and waits for them to be discarded. The first wave is read in
    detail (and releases the heavy sessions first, to see how much of their memory goes
    back to the OS); the growth per wave is the slope of RSS after waves 4..n (and, as
    ``growth_early``, 2..5: the allocator is still settling then, a leak shows in every wave).

    RSS per session is the growth over the second half of each batch, divided by its
    sessions: the first half absorbs one-off allocations and the memory that the process
    had freed but kept, so what remains is the marginal memory of one more idle session.
    ``rss_mb_per_wave`` keeps every reading: before, half the small sessions, all of them,
    half the heavy ones, all of them, heavy released, after (0: not read in that wave).
    """

    async def quiet_rss(wait: float | None = None) -> int:
        if wait is None:
            await settle_reaped(server, reaping)
        else:
            await settle(server, wait)
        return server.rss_bytes()

    async def batch(app: str, count: int, into: list[BenchSession]) -> tuple[int, int]:
        half = count // 2
        opened = await open_sessions(server, app, half, concurrency, deflate)
        at_half = await quiet_rss(0.0)
        opened += await open_sessions(server, app, count - half, concurrency, deflate)
        into.extend(s for s, _ in opened)
        return at_half, await quiet_rss(0.0)

    start_rss = server.rss_bytes()  # a fresh server: its imports and apps, no session yet
    # one session of each app first, as the CPU rounds' warm-up does: the heavy app's first
    # session imports numpy.random (~3.5 MB of extension modules), which is no session's memory
    warm: list[BenchSession] = []
    for app in ("small", "heavy"):
        warm += [s for s, _ in await open_sessions(server, app, 1, 1, deflate)]
    await close_all(warm, server)
    del warm
    rows = []
    before = await quiet_rss()
    for wave in range(waves):
        small: list[BenchSession] = []
        heavy: list[BenchSession] = []
        if wave == 0:  # the detailed wave: idle figures and the heavy memory returned
            small_half, with_small = await batch("small", k_small, small)
            heavy_half, with_heavy = await batch("heavy", k_heavy, heavy)
            await close_all(heavy, server)
            heavy_released = await quiet_rss()
        else:  # reuse: the same sessions again, closed together
            small += [s for s, _ in await open_sessions(server, "small", k_small, 1, deflate)]
            heavy += [s for s, _ in await open_sessions(server, "heavy", k_heavy, 1, deflate)]
            small_half = with_small = heavy_half = heavy_released = 0
            with_heavy = server.rss_bytes()
            await close_all(heavy, server)
        heavy.clear()
        await close_all(small, server)
        small.clear()
        after = await quiet_rss()
        rows.append((before, small_half, with_small, heavy_half, with_heavy, heavy_released, after))
        before = after
    first = rows[0]
    afters = [row[-1] for row in rows]
    per_session = (k_small + k_heavy) * 1024
    # The first waves pay one-off allocations (caches, arenas, free memory touched for the
    # first time), which fade out; a leak would not. Growth is the slope over waves 4..n.
    late = afters[3:] if len(afters) >= 6 else afters[1:] if len(afters) > 2 else afters
    early = afters[1:5] if len(afters) > 2 else afters
    small_second, heavy_second = k_small - k_small // 2, k_heavy - k_heavy // 2
    return {
        "start_rss_mb": start_rss / 2**20,
        "small_rss_per_session_kb": (first[2] - first[1]) / small_second / 1024,
        "heavy_rss_per_session_kb": (first[4] - first[3]) / heavy_second / 1024,
        "growth_per_session_per_wave_kb": _slope(range(len(late)), late) / per_session,
        "growth_early_per_session_per_wave_kb": _slope(range(len(early)), early) / per_session,
        # Wave 1: the heavy sessions' memory came fresh from the OS; how much went back.
        "heavy_returned_pct": (first[4] - first[5]) / max(first[4] - first[2], 1) * 100,
        "rss_mb_per_wave": [[round(v / 2**20, 2) for v in row] for row in rows],
    }


def _slope(xs: Sequence[float] | range, ys: Sequence[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mean_x) ** 2 for x in xs)
    return num / den if den else 0.0
