"""Smoke tests of the benchmark (``make bench``): its quick mode against app_server only, and
the memory breakdown (``python -m bench.breakdown``) on a few sessions.

They check that the load generator speaks the protocol and that the figures are sane,
positive numbers; they assert nothing about speed (the figures live in BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bench import breakdown
from bench.report import format_report
from bench.run import Plan, machine_info, medians, run_bench, run_traced
from bench.servers import SERVERS, process_wakeups


def test_quick_bench_against_app_server() -> None:
    plan = Plan.quick_plan()
    plan.floor = False
    plan.sessions, plan.concurrency = 4, 2
    plan.rt_sessions, plan.rt_moves = 3, 5

    result = run_bench(plan, [SERVERS["app_server"]], ["creation", "roundtrip"])

    figures = result["medians"]["app_server"]
    for name in (
        "creation.sessions_per_s",
        "creation.latency_p50_ms",
        "creation.latency_p99_ms",
        "creation.cpu_per_session_ms",
        "roundtrip.latency_p50_ms",
        "roundtrip.latency_p99_ms",
        "roundtrip.patches_per_s",
    ):
        assert math.isfinite(figures[name]) and figures[name] > 0, (name, figures)
    # the server's CPU clock counts nanoseconds: even a few patches cost something
    assert figures["roundtrip.cpu_per_patch_ms"] > 0
    # three clients moving one at a time leave the server waiting for them between moves
    assert figures["roundtrip.wakeups_per_patch"] > 0
    assert figures["creation.latency_p99_ms"] >= figures["creation.latency_p50_ms"]
    assert figures["roundtrip.latency_p99_ms"] >= figures["roundtrip.latency_p50_ms"]

    table = format_report(result)
    row = next(line for line in table.splitlines() if line.startswith("| sessions/s |"))
    value = float(re.split(r"\s*\|\s*", row)[2].replace(",", ""))
    assert value > 0
    assert "| server CPU per patch (ms) |" in table


def test_wakeups_count_every_thread_that_slept() -> None:
    """A sleep is a wake-up, in the main thread or another one of the process."""
    pid = os.getpid()
    before = process_wakeups(pid)
    time.sleep(0.01)
    after_main = process_wakeups(pid)
    assert after_main >= before + 1

    slept, done = threading.Event(), threading.Event()

    def sleeper() -> None:
        for _ in range(3):
            time.sleep(0.005)
        slept.set()
        done.wait()

    thread = threading.Thread(target=sleeper)
    thread.start()
    slept.wait()
    try:  # counted while the thread lives: /proc keeps no count for a thread that ended
        assert process_wakeups(pid) >= after_main + 3
    finally:
        done.set()
        thread.join()


def test_memory_breakdown_of_app_server(tmp_path: Path) -> None:
    """``python -m bench.breakdown`` on a few sessions: every component reported, a document."""
    out = tmp_path / "breakdown.json"
    assert breakdown.main(["-n", "3", "--warmup", "1", "--json", str(out)]) == 0

    figures = json.loads(out.read_text())
    assert list(figures["components"]) == list(breakdown.COMPONENTS)
    assert all(math.isfinite(kb) for kb in figures["components"].values())
    assert figures["components"]["document"] > 0
    assert figures["components"]["app_server"] > 0
    assert figures["total"] == pytest.approx(sum(figures["components"].values()))


def test_memory_left_by_waves_of_closed_sessions(tmp_path: Path) -> None:
    """``python -m bench.breakdown --waves``: what closed and discarded sessions leave, per
    session per wave; a fraction of a session (~250 KB), never a whole one."""
    out = tmp_path / "waves.json"
    assert breakdown.main(["-n", "3", "--waves", "2", "--warmup", "1", "--json", str(out)]) == 0

    figures = json.loads(out.read_text())
    assert figures["waves"] == 2 and figures["sessions"] == 6
    assert list(figures["components"]) == list(breakdown.COMPONENTS)
    assert figures["total"] < 100, "a closed session's document was left behind"


def test_the_bench_reports_memory_above_the_document_traced() -> None:
    """``make bench``'s traced rows: ``bench.breakdown`` in a server of its own, per idle session
    above its document; a few KB, never a second document (~240 KB)."""
    above = run_traced("app_server", "small", 3)
    assert 0 < above < 100

    result: dict[str, Any] = {
        "machine": machine_info(),
        "plan": asdict(Plan.quick_plan()),
        "servers": ["app_server"],
        "labels": {"app_server": "app_server"},
        "rounds": {"app_server": []},
        "memory": {"app_server": []},
        "traced": {"app_server": [{"small_above_doc_kb": above}]},
    }
    result["medians"] = {"app_server": medians(result, "app_server")}
    assert result["medians"]["app_server"]["traced.small_above_doc_kb"] == above
    assert "| small app: above doc, traced (KB) |" in format_report(result)
