"""Run a server's own command line, with tracemalloc on signal: SIGUSR2 starts tracing,
SIGUSR1 dumps a snapshot.

``python -m bench.traced_launcher [--frames F] DIR MODULE [ARGS ...]`` runs
``python -m MODULE ARGS`` in this process (``app_server.cli`` or ``bokeh``: their normal entry
points, so what is measured is the server as deployed). Tracing starts on SIGUSR2, once the
server is up, since importing bokeh traced takes ten times as long (and the snapshots hold
every module's objects); ``DIR/tracing`` appears when it has started. Each SIGUSR1 collects
garbage and writes the next snapshot to ``DIR/snapshot.0``, ``DIR/snapshot.1``, ...; the file
appears whole (written aside, then renamed), so a reader can poll for it. ``bench.breakdown``
drives it.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import runpy
import signal
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["main", "snapshot_path", "tracing_path"]

PR_SET_PDEATHSIG = 1


def snapshot_path(directory: Path, index: int) -> Path:
    return directory / f"snapshot.{index}"


def tracing_path(directory: Path) -> Path:
    return directory / "tracing"


def _starter(directory: Path, frames: int) -> Callable[[int, FrameType | None], None]:
    """A SIGUSR2 handler that starts tracing and says so in ``directory``."""

    def start(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        tracemalloc.start(frames)
        tracing_path(directory).touch()

    return start


def _dumper(directory: Path) -> Callable[[int, FrameType | None], None]:
    """A SIGUSR1 handler that dumps snapshot 0, 1, ... into ``directory``."""
    count = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal count
        gc.collect()  # what is garbage is not a session's memory
        target = snapshot_path(directory, count)
        partial = target.with_suffix(".partial")
        tracemalloc.take_snapshot().dump(str(partial))
        os.replace(partial, target)
        count += 1

    return dump


def _die_with_parent() -> None:
    """SIGTERM this process when the tool that started it dies, even by SIGKILL (Linux), so a
    killed run leaves no traced server behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was gone before prctl
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.traced_launcher")
    parser.add_argument("directory", type=Path, help="where the snapshots go")
    parser.add_argument("module", help="the server's command line module: app_server.cli, bokeh")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.add_argument("--frames", type=int, default=12, help="frames kept per allocation")
    args = parser.parse_args()
    _die_with_parent()
    signal.signal(signal.SIGUSR2, _starter(args.directory, args.frames))
    signal.signal(signal.SIGUSR1, _dumper(args.directory))
    sys.argv = [args.module, *args.args]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
