"""Profile a server under one workload with py-spy, and summarize where its CPU goes.

``python -m bench.profile creation|roundtrip|fanout [--server app_server] [--out DIR]``
starts the server, attaches ``py-spy record`` (raw collapsed stacks) for the workload,
and prints the functions with the most samples, inclusive and self. py-spy is not a
dependency: ``pip install py-spy``. The collapsed stacks are kept in ``DIR`` (default a
temporary directory) for flame graphs (``flamegraph.pl`` or speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import workloads
from .servers import SERVERS, run_server

__all__ = ["main", "summarize"]


def summarize(collapsed: Path, top: int = 25, match: str = "") -> str:
    """The top frames by inclusive and by self samples, from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive:"]
    for frame, count in inclusive.most_common():
        if match in frame:
            lines.append(f"  {count / total * 100:5.1f}%  {frame}")
            if len(lines) > top + 3:
                break
    lines += ["", "self:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {count / total * 100:5.1f}%  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)" so that lines of a function merge
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


async def _drive(server, workload: str, size: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    reaping = workloads.Reaping(250, 1000)
    if workload == "creation":
        return await workloads.session_creation(server, size, 4, reaping)
    if workload == "roundtrip":
        return await workloads.round_trip(server, 20, size, reaping)
    figures, _ = await workloads.fan_out(server, 20, float(size), reaping)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("workload", choices=["creation", "roundtrip", "fanout"])
    parser.add_argument("--server", default="app_server", choices=sorted(SERVERS))
    parser.add_argument(
        "--size", type=int, help="sessions (creation), moves per session (roundtrip), seconds"
    )
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, help="where to keep the collapsed stacks")
    parser.add_argument("--match", default="", help="only list inclusive frames containing this")
    parser.add_argument(
        "--native", action="store_true", help="include C frames (the event loop, encoders)"
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed: pip install py-spy")
    size = args.size or {"creation": 40, "roundtrip": 50, "fanout": 8}[args.workload]
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    collapsed = out_dir / f"{args.server}-{args.workload}.txt"

    with run_server(SERVERS[args.server], check_ms=250, lifetime_ms=1000) as server:
        warm = workloads.Reaping(0, 0)
        asyncio.run(workloads.round_trip(server, 2, 3, warm))
        asyncio.run(workloads.session_creation(server, 3, 1, warm))
        record = ["record", "-p", str(server.pid), "-r", str(args.rate), "-f", "raw"]
        if args.native:
            record.append("--native")
        spy = subprocess.Popen(
            [py_spy, *record, "-o", str(collapsed)] + ([] if args.native else ["--nonblocking"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # let py-spy attach
        figures = asyncio.run(_drive(server, args.workload, size))
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=30)
    print(", ".join(f"{k}={v:.3g}" for k, v in figures.items()))
    if not collapsed.exists():
        print(err.decode(errors="replace"), file=sys.stderr)
        return 1
    print(summarize(collapsed, match=args.match))
    print(f"\ncollapsed stacks: {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
