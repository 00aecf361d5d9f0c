"""The benchmark driver: servers side by side, A B A B rounds, a table of medians and ratios.

``python -m bench`` runs everything; ``--quick`` is a smoke run (seconds, not minutes);
``--workloads``/``--servers`` pick a subset; ``--json PATH`` keeps every round's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import workloads
from .report import format_report
from .servers import (
    ROOT,
    SERVERS,
    RunningServer,
    ServerKind,
    available_servers,
    run_servers,
)

__all__ = ["Plan", "main", "run_bench"]

WORKLOADS = ("creation", "memory", "roundtrip", "fanout", "scale")
TRACEABLE = ("app_server", "bokeh")  # the servers bench.breakdown can trace


@dataclass
class Plan:
    """Sizes of every workload; ``Plan.quick()`` is the smoke-test size."""

    rounds: int = 5
    sessions: int = 12  # session creation: N
    concurrency: int = 3  # session creation: C
    rt_sessions: int = 20  # round trip: K
    rt_moves: int = 15  # round trip: M
    fo_sessions: int = 20  # fan-out: K of the per-message figures
    fo_duration: float = 1.5
    sweep: tuple[int, ...] = (40, 60, 80, 100, 120, 160, 200, 240, 320, 400, 480)
    sweep_duration: float = 1.0
    sweep_budget: float = 40.0
    sweep_rounds: int = 1
    mem_rounds: int = 1
    k_small: int = 8
    k_heavy: int = 4
    waves: int = 8
    traced_small: int = 50  # idle sessions traced by bench.breakdown (0: none)
    traced_heavy: int = 30
    scale_sessions: int = 2000  # scale: concurrent sessions, a tenth of them streaming
    scale_duration: float = 30.0
    cpu_reaping: workloads.Reaping = field(default_factory=lambda: workloads.Reaping(200, 600))
    mem_reaping: workloads.Reaping = field(default_factory=lambda: workloads.Reaping(100, 300))
    deflate: bool = True
    floor: bool = True
    quick: bool = False

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            rounds=1,
            sessions=6,
            concurrency=2,
            rt_sessions=4,
            rt_moves=5,
            fo_sessions=4,
            fo_duration=1.0,
            sweep=(),
            k_small=4,
            k_heavy=2,
            waves=2,
            traced_small=3,
            traced_heavy=0,
            scale_sessions=60,
            scale_duration=3.0,
            cpu_reaping=workloads.Reaping(100, 500),
            quick=True,
        )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    import bokeh
    import uvicorn
    import websockets

    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "bokeh": bokeh.__version__,
        "uvicorn": uvicorn.__version__,
        "websockets": websockets.__version__,
        "loadavg_start": os.getloadavg()[0],
        "git": _git_state(),
    }


def _git_state() -> str:
    """The commit measured, and whether app_server/ had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app_server"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}{' + uncommitted app_server changes' if dirty else ''}" or "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_floor(quick: bool) -> dict[str, float]:
    """The in-process cost floor, in a fresh interpreter (so its memory figures are clean)."""
    command = [sys.executable, "-m", "bench.floor", *(["--quick"] if quick else [])]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_traced(server: str, app: str, sessions: int) -> float:
    """KB per idle session above its document, traced by ``bench.breakdown`` in a server of
    its own: exact, where the RSS rows move by pages and count the allocator's overhead on the
    document itself as the server's."""
    with tempfile.TemporaryDirectory(prefix="bench-traced-") as tmp:
        out = os.path.join(tmp, "breakdown.json")
        command = [sys.executable, "-m", "bench.breakdown", "--server", server, "--app", app]
        command += ["-n", str(sessions), "--warmup", str(min(10, sessions)), "--json", out]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        with open(out) as f:
            return float(json.load(f)["above_document"])


async def _warm_up(server: RunningServer, reaping: workloads.Reaping, deflate: bool) -> None:
    """Load every app once and do a few round trips, so lazy imports are not measured."""
    opened = []
    for app in ("small", "heavy", "stream"):
        opened += await workloads.open_sessions(server, app, 1, 1, deflate)
    await workloads.close_all([s for s, _ in opened], server)
    await workloads.round_trip(server, 1, 3, workloads.Reaping(0, 0), deflate=deflate)
    await workloads.settle_reaped(server, reaping)


async def _warm_up_all(
    servers: Sequence[RunningServer], reaping: workloads.Reaping, deflate: bool
) -> None:
    await asyncio.gather(*(_warm_up(server, reaping, deflate) for server in servers))


async def _cpu_round(
    server: RunningServer, plan: Plan, selected: Sequence[str], sweep: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reaping = plan.cpu_reaping
    # Session creation comes last: its CPU window ends once the server has discarded its
    # sessions and gone quiet, so the next server's turn starts on a quiet machine.
    if "fanout" in selected:
        figures, levels = await workloads.fan_out(
            server,
            plan.fo_sessions,
            plan.fo_duration,
            reaping,
            sweep=plan.sweep if sweep else (),
            sweep_duration=plan.sweep_duration,
            sweep_budget=plan.sweep_budget,
            deflate=plan.deflate,
        )
        out["fanout"] = figures
        if sweep and plan.sweep:
            out["fanout_levels"] = [asdict(level) for level in levels]
    if "roundtrip" in selected:
        out["roundtrip"] = await workloads.round_trip(
            server, plan.rt_sessions, plan.rt_moves, reaping, deflate=plan.deflate
        )
    if "creation" in selected:
        out["creation"] = await workloads.session_creation(
            server, plan.sessions, plan.concurrency, reaping, deflate=plan.deflate
        )
    if "creation" not in selected:
        await workloads.settle_reaped(server, reaping)
    return out


async def _memory_all(servers: Sequence[RunningServer], plan: Plan) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(
            *(
                workloads.memory_waves(
                    server,
                    plan.mem_reaping,
                    k_small=plan.k_small,
                    k_heavy=plan.k_heavy,
                    waves=plan.waves,
                    deflate=plan.deflate,
                )
                for server in servers
            )
        )
    )


def run_bench(
    plan: Plan,
    kinds: Sequence[ServerKind] | None = None,
    selected: Sequence[str] = WORKLOADS,
) -> dict[str, Any]:
    """Run the plan; every figure of every round, per server, plus the medians."""
    kinds = list(kinds or available_servers())
    started = time.monotonic()
    result: dict[str, Any] = {
        "machine": machine_info(),
        "plan": {k: v for k, v in asdict(plan).items()},
        "servers": [k.key for k in kinds],
        "labels": {k.key: k.label for k in kinds},
        "rounds": {k.key: [] for k in kinds},
        "memory": {k.key: [] for k in kinds},
        "scale": {k.key: [] for k in kinds},
        "traced": {k.key: [] for k in kinds},
    }
    if plan.floor:
        _log("cost floor (in-process, no server) ...")
        result["floor"] = run_floor(plan.quick)

    cpu_selected = [w for w in selected if w not in ("memory", "scale")]
    if cpu_selected:
        reaping = plan.cpu_reaping
        _log(f"starting {', '.join(k.label for k in kinds)} ...")
        with run_servers(
            kinds, check_ms=reaping.check_ms, lifetime_ms=reaping.lifetime_ms
        ) as running:
            servers = {server.kind.key: server for server in running}
            asyncio.run(_warm_up_all(running, reaping, plan.deflate))
            for index in range(plan.rounds):
                for kind in kinds:  # A B A B: each round runs every server in turn
                    server = servers[kind.key]
                    server.check_alive()
                    t0 = time.monotonic()
                    figures = asyncio.run(
                        _cpu_round(server, plan, cpu_selected, sweep=index < plan.sweep_rounds)
                    )
                    result["rounds"][kind.key].append(figures)
                    _log(
                        f"round {index + 1}/{plan.rounds} {kind.label}: "
                        f"{time.monotonic() - t0:.1f}s {_brief(figures)}"
                    )

    if "memory" in selected:
        # Fresh servers, driven at the same time: these figures are RSS, not CPU time, and
        # most of the phase is spent waiting for sessions to be discarded.
        reaping = plan.mem_reaping
        for index in range(plan.mem_rounds):
            t0 = time.monotonic()
            with run_servers(
                kinds, check_ms=reaping.check_ms, lifetime_ms=reaping.lifetime_ms
            ) as running:
                outcomes = asyncio.run(_memory_all(running, plan))
            for kind, figures in zip(kinds, outcomes, strict=True):
                result["memory"][kind.key].append(figures)
                _log(
                    f"memory {index + 1}/{plan.mem_rounds} {kind.label}: "
                    f"{time.monotonic() - t0:.1f}s {_brief({'memory': figures})}"
                )

    if "memory" in selected:
        for kind in kinds:
            if kind.key not in TRACEABLE:
                continue
            t0 = time.monotonic()
            sizes = (("small", plan.traced_small), ("heavy", plan.traced_heavy))
            traced = {f"{app}_above_doc_kb": run_traced(kind.key, app, n) for app, n in sizes if n}
            result["traced"][kind.key].append(traced)
            _log(f"traced {kind.label}: {time.monotonic() - t0:.1f}s {_brief({'traced': traced})}")

    if "scale" in selected:
        # One server at a time, each fresh: thousands of sessions, and the CPU is the figure.
        for kind in kinds:
            t0 = time.monotonic()
            with run_servers([kind], check_ms=1000, lifetime_ms=5000) as (server,):
                figures = asyncio.run(
                    workloads.scale(
                        server, plan.scale_sessions, plan.scale_duration, deflate=plan.deflate
                    )
                )
            result["scale"][kind.key].append(figures)
            _log(f"scale {kind.label}: {time.monotonic() - t0:.1f}s {_brief({'scale': figures})}")

    result["medians"] = {k.key: medians(result, k.key) for k in kinds}
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    result["elapsed_s"] = time.monotonic() - started
    return result


def _brief(figures: dict[str, Any]) -> str:
    parts = []
    for workload, values in figures.items():
        if isinstance(values, dict):
            shown = ", ".join(
                f"{k}={v:.3g}" for k, v in values.items() if isinstance(v, int | float)
            )
            parts.append(f"[{workload}] {shown}")
    return " ".join(parts)


def medians(result: dict[str, Any], key: str) -> dict[str, float]:
    """The median of every figure over the rounds that have it, as ``workload.figure``."""
    samples: dict[str, list[float]] = {}
    rows = list(result["rounds"][key]) + [{"memory": m} for m in result["memory"][key]]
    rows += [{"scale": m} for m in result.get("scale", {}).get(key, [])]
    rows += [{"traced": m} for m in result.get("traced", {}).get(key, [])]
    for row in rows:
        for workload, values in row.items():
            if not isinstance(values, dict):
                continue
            for name, value in values.items():
                if isinstance(value, int | float):
                    samples.setdefault(f"{workload}.{name}", []).append(float(value))
    out = {name: statistics.median(values) for name, values in samples.items()}
    floor = result.get("floor")
    if floor:
        for app in ("small", "heavy"):
            per_session = out.get(f"memory.{app}_rss_per_session_kb")
            if per_session is not None:
                out[f"memory.{app}_overhead_kb"] = per_session - floor[f"{app}_doc_kb"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, 1 round")
    parser.add_argument("--rounds", type=int, help="A B A B rounds of the CPU workloads")
    parser.add_argument("--mem-rounds", type=int, help="rounds of the memory workload")
    parser.add_argument(
        "--servers",
        default=",".join(k.key for k in available_servers()),
        help="comma-separated: app_server,bokeh,asgi (asgi needs bokeh >= 3.10)",
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="do not offer permessage-deflate (browsers always offer it)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the in-process cost floor")
    parser.add_argument("--json", metavar="PATH", help="write every round's figures here")
    args = parser.parse_args(argv)

    plan = Plan.quick_plan() if args.quick else Plan()
    if args.rounds:
        plan.rounds = args.rounds
    if args.mem_rounds:
        plan.mem_rounds = args.mem_rounds
    plan.deflate = not args.no_deflate
    plan.floor = not args.no_floor
    selected = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(selected) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    kinds = []
    for key in (k.strip() for k in args.servers.split(",") if k.strip()):
        if key not in SERVERS:
            parser.error(f"unknown server {key!r}")
        if key == "asgi" and SERVERS["asgi"] not in available_servers():
            _log("BokehASGI needs bokeh >= 3.10 (Python 3.12+): skipping it")
            continue
        kinds.append(SERVERS[key])

    result = run_bench(plan, kinds, selected)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print(format_report(result))
    return 0
