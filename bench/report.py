"""The table the bench prints: medians per server, ratios app_server / the others, the floor."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["ROWS", "format_report", "main"]

# (section, label, key, decimals, target on the ratio app_server / other)
ROWS: list[tuple[str, str, str, int, str]] = [
    ("session creation", "sessions/s", "creation.sessions_per_s", 1, ">= 2"),
    ("session creation", "latency p50 (ms)", "creation.latency_p50_ms", 0, ""),
    ("session creation", "latency p99 (ms)", "creation.latency_p99_ms", 0, ""),
    ("session creation", "server CPU per session (ms)", "creation.cpu_per_session_ms", 1, "<= 0.5"),
    ("idle sessions", "RSS after start, before any session (MB)", "memory.start_rss_mb", 1, ""),
    ("idle sessions", "small app: RSS per session (KB)", "memory.small_rss_per_session_kb", 0, ""),
    (
        "idle sessions",
        "small app: overhead above doc (KB)",
        "memory.small_overhead_kb",
        0,
        "<= 10 KB",
    ),
    ("idle sessions", "heavy app: RSS per session (KB)", "memory.heavy_rss_per_session_kb", 0, ""),
    (
        "idle sessions",
        "heavy app: overhead above doc (KB)",
        "memory.heavy_overhead_kb",
        0,
        "<= 10 KB",
    ),
    (
        "idle sessions",
        "small app: above doc, traced (KB)",
        "traced.small_above_doc_kb",
        1,
        "<= 10 KB",
    ),
    (
        "idle sessions",
        "heavy app: above doc, traced (KB)",
        "traced.heavy_above_doc_kb",
        1,
        "<= 10 KB",
    ),
    (
        "release and reuse",
        "RSS growth per session per wave, waves 4-8 (KB)",
        "memory.growth_per_session_per_wave_kb",
        2,
        "< 1 KB",
    ),
    (
        "release and reuse",
        "the same, waves 2-5: the allocator settling (KB)",
        "memory.growth_early_per_session_per_wave_kb",
        2,
        "",
    ),
    (
        "release and reuse",
        "heavy memory returned to OS (%)",
        "memory.heavy_returned_pct",
        0,
        ">= 80%",
    ),
    ("round trip", "latency p50 (ms)", "roundtrip.latency_p50_ms", 1, ""),
    ("round trip", "latency p99 (ms)", "roundtrip.latency_p99_ms", 1, "<= 0.5 (asgi)"),
    ("round trip", "patches/s", "roundtrip.patches_per_s", 0, ""),
    ("round trip", "server CPU per patch (ms)", "roundtrip.cpu_per_patch_ms", 2, "<= 0.3"),
    ("round trip", "server wake-ups per patch", "roundtrip.wakeups_per_patch", 2, ""),
    ("fan-out", "delivered / ideal (%)", "fanout.delivered_pct", 1, ""),
    ("fan-out", "p99 inter-arrival (ms)", "fanout.p99_interarrival_ms", 0, ""),
    ("fan-out", "server CPU per message (ms)", "fanout.cpu_per_message_ms", 3, "<= 0.3"),
    ("fan-out", "server wake-ups per message", "fanout.wakeups_per_message", 2, ""),
    ("fan-out", "largest K holding 20 updates/s", "fanout.largest_k", 0, ">= 10 (bokeh)"),
    ("scale", "sessions held (of those opened)", "scale.held", 0, ""),
    ("scale", "time to open all (s)", "scale.open_all_s", 1, ""),
    ("scale", "server CPU per session opened (ms)", "scale.cpu_per_session_ms", 1, ""),
    ("scale", "RSS per session (KB)", "scale.rss_per_session_kb", 0, ""),
    ("scale", "streamed sessions: delivered / ideal (%)", "scale.delivered_pct", 1, ">= 98%"),
    ("scale", "streamed: server CPU per message (ms)", "scale.cpu_per_message_ms", 3, ""),
    ("scale", "server CPU while streaming (cores)", "scale.server_cores", 2, ""),
    ("scale", "event-loop lag p50 (ms)", "scale.lag_p50_ms", 1, ""),
    ("scale", "event-loop lag p99 (ms)", "scale.lag_p99_ms", 1, "< 50 ms"),
    ("load generator", "client CPU, session creation (cores)", "creation.client_busy", 2, ""),
    ("load generator", "client CPU, round trip (cores)", "roundtrip.client_busy", 2, ""),
    ("load generator", "client CPU, fan-out (cores)", "fanout.client_busy", 2, ""),
    ("load generator", "client CPU, scale (cores)", "scale.client_busy", 2, ""),
]

# The floor (bench/floor.py) a row's figure is bounded by, and the target on app_server / floor
FLOORS: dict[str, tuple[str, str]] = {
    "creation.cpu_per_session_ms": ("session_floor_ms", ""),
    "memory.small_rss_per_session_kb": ("small_doc_kb", ""),
    "memory.heavy_rss_per_session_kb": ("heavy_doc_kb", ""),
    "roundtrip.cpu_per_patch_ms": ("patch_floor_ms", "<= 1.3"),
    "fanout.cpu_per_message_ms": ("stream_floor_ms", "<= 1.3"),
    "scale.cpu_per_message_ms": ("stream_floor_ms", ""),
    "scale.rss_per_session_kb": ("small_doc_kb", ""),
}

# Shares and near-zero figures: a ratio means nothing there; the target is absolute.
NO_RATIO = {
    "memory.growth_per_session_per_wave_kb",
    "memory.growth_early_per_session_per_wave_kb",
    "memory.heavy_returned_pct",
    "fanout.delivered_pct",
    "creation.client_busy",
    "roundtrip.client_busy",
    "fanout.client_busy",
    "scale.held",
    "scale.delivered_pct",
    "scale.server_cores",
    "scale.client_busy",
}

FLOOR_ROWS = [
    ("app code (small app, new document, its handlers)", "session_app_ms", "ms"),
    ("page HTML (token + template, the bundle made once)", "session_page_ms", "ms"),
    ("PULL-DOC serialization (app_server's)", "session_serialize_ms", "ms"),
    ("= floor per session", "session_floor_ms", "ms"),
    ("Bokeh's Document.validate (per session in bokeh's servers)", "validate_ms", "ms"),
    ("Bokeh's Document.to_json (bokeh's PULL-DOC)", "bokeh_serialize_ms", "ms"),
    ("Document.destroy (bokeh's, with gc.collect)", "destroy_gc_ms", "ms"),
    ("the same without its gc.collect", "destroy_nogc_ms", "ms"),
    ("one gc.get_referrers (modules.destroy's leak check)", "get_referrers_ms", "ms"),
    ("floor per round-trip patch (apply + callback + encode)", "patch_floor_ms", "ms"),
    ("floor per streamed message (callback + encode)", "stream_floor_ms", "ms"),
    (
        "the same at the fan-out's rhythm (20 documents, a point each every 50 ms)",
        "stream_rhythm_floor_ms",
        "ms",
    ),
    ("small app document in memory (traced)", "small_doc_kb", "KB"),
    ("heavy app document in memory (traced)", "heavy_doc_kb", "KB"),
]


def _fmt(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{decimals}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def _plan_line(plan: dict[str, Any]) -> str:
    return (
        f"session creation N={plan['sessions']} C={plan['concurrency']}; "
        f"round trip K={plan['rt_sessions']} M={plan['rt_moves']}; "
        f"fan-out K={plan['fo_sessions']} for {plan['fo_duration']}s, "
        f"sweep {list(plan['sweep'])}; idle {plan['k_small']} small + {plan['k_heavy']} heavy "
        f"sessions, {plan['waves']} waves; {plan['rounds']} CPU rounds, "
        f"{plan['mem_rounds']} memory round(s); scale {plan.get('scale_sessions', '-')} "
        f"sessions (a tenth streaming) for {plan.get('scale_duration', '-')}s; permessage-deflate "
        f"{'offered' if plan['deflate'] else 'not offered'}"
    )


def format_report(result: dict[str, Any]) -> str:
    servers: list[str] = result["servers"]
    labels: dict[str, str] = result["labels"]
    med: dict[str, dict[str, float]] = result["medians"]
    machine = result["machine"]
    others = [s for s in servers if s != "app_server"]
    has_app = "app_server" in servers

    floor: dict[str, float] = result.get("floor") or {}
    header = ["figure (median)", *(labels[s] for s in servers)]
    if has_app:
        header += [f"app_server / {labels[s]}" for s in others]
        header.append("target")
        if floor:
            header += ["floor", "app_server / floor", "target vs floor"]
    lines = [
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gb']} GB; "
        f"Python {machine['python']}, bokeh {machine['bokeh']}, uvicorn {machine['uvicorn']}, "
        f"websockets {machine['websockets']}; load average {machine['loadavg_start']:.1f} "
        f"at start, {machine.get('loadavg_end', float('nan')):.1f} at end; "
        f"app_server at {machine.get('git', 'unknown')}",
        "plan: " + _plan_line(result["plan"]),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    section = None
    for sec, label, key, decimals, target in ROWS:
        values = [med.get(s, {}).get(key) for s in servers]
        if all(v is None for v in values):
            continue
        if sec != section:
            section = sec
            lines.append(f"| **{sec}** |" + " |" * (len(header) - 1))
        row = [label, *(_fmt(v, decimals) for v in values)]
        if key == "fanout.largest_k":  # a lower bound when the sweep stopped while holding
            capped = [med.get(s, {}).get("fanout.largest_k_capped", 0) >= 0.5 for s in servers]
            row[1:] = [f">= {v}" if c else v for v, c in zip(row[1:], capped, strict=True)]
        if has_app:
            app = med.get("app_server", {}).get(key)
            if key in NO_RATIO:
                row += ["" for _ in others]
            else:
                row += [_ratio(app, med.get(s, {}).get(key)) for s in others]
            row.append(target)
            if floor:
                floor_key, floor_target = FLOORS.get(key, ("", ""))
                bound = floor.get(floor_key)
                if bound is None:
                    row += ["", "", ""]
                else:
                    row += [_fmt(bound, decimals), _ratio(app, bound), floor_target]
        lines.append("| " + " | ".join(row) + " |")

    if floor:
        lines += [
            "",
            "cost floor (in-process, no server, CPU time):",
            "",
            "| floor | value |",
            "|---|---|",
        ]
        for label, key, unit in FLOOR_ROWS:
            if key in floor:
                value = floor[key]
                lines.append(f"| {label} | {value:,.{3 if value < 1 else 2}f} {unit} |")
    lines.append("")
    lines.append(f"elapsed: {result.get('elapsed_s', 0):.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report PATH``: the table again, from a run's ``--json`` file."""
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("path", help="a file written by python -m bench --json PATH")
    args = parser.parse_args(argv)
    with open(args.path) as f:
        print(format_report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
