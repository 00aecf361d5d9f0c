"""Giving memory back to the operating system: a process-wide policy, so the running server
owns it and a host that mounts app_server turns it on only if it asks (``manage_process_memory``).

Bokeh collects the whole heap for every discarded session. Instead, what exists once the server
has started is frozen out of later collections (a full one then costs ~1 ms, not ~80), the
collections of many discards are coalesced into one a moment later, spaced out so that they take
at most ~5% of the loop, and the freed heap pages are trimmed back to the OS.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable

__all__ = ["MemoryReclaimer", "release_memory"]

COLLECT_DELAY = 1.0
# A full collection stalls the loop while it runs (about 0.6 ms per live small session): the
# next one waits at least this many times as long, so collections take at most ~5% of it.
COLLECT_SPACING = 20


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, which hands freed heap pages back to the OS; else a no-op."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    return lambda: trim(0)


def release_memory(trim: Callable[[], object]) -> None:
    """One full collection, then return what it freed to the operating system."""
    gc.collect()
    trim()


class MemoryReclaimer:
    """Does nothing unless ``enabled``: then it freezes the startup heap and collects after
    discards (:meth:`collect_soon`)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._trim: Callable[[], object] = lambda: None
        self._timer: asyncio.TimerHandle | None = None
        self._next_at = 0.0  # loop time

    def start(self) -> None:
        """What exists after startup (modules, shared data) lives as long as the process:
        leave it out of every later full collection."""
        if self.enabled:
            self._trim = _malloc_trim()
            gc.freeze()

    def stop(self) -> None:
        """Leave the process as it was found: nothing scheduled, nothing frozen."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.enabled:
            gc.unfreeze()

    def collect_soon(self) -> None:
        """Coalesce the garbage collections of many discards into one, a moment later."""
        if self.enabled and self._timer is None:
            loop = asyncio.get_running_loop()
            when = max(loop.time() + COLLECT_DELAY, self._next_at)
            self._timer = loop.call_at(when, self._collect)

    def _collect(self) -> None:
        self._timer = None
        start = time.perf_counter()
        release_memory(self._trim)
        took = time.perf_counter() - start
        self._next_at = asyncio.get_running_loop().time() + took * COLLECT_SPACING
