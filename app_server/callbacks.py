"""Scheduling of Bokeh's session callbacks (next tick, timeout, periodic) on asyncio.

Bokeh's ``Document`` creates the callback objects; this module decides when they
run. Adding a callback is safe from any thread: it is handed to the loop with
``call_soon_threadsafe``, which keeps each thread's order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from bokeh.io.doc import patch_curdoc
from bokeh.server.callbacks import (
    NextTickCallback,
    PeriodicCallback,
    SessionCallback,
    TimeoutCallback,
)

__all__ = ["CallbackScheduler", "Invoker", "run_with_curdoc"]

log = logging.getLogger("app_server.callbacks")

Invoker = Callable[[SessionCallback], Coroutine[Any, Any, None]]
Step = Callable[..., Any]  # step(func, arg): func(arg), one synchronous stretch of a coroutine

# Periodic runs fall on a shared grid of min(period, this) seconds, so the same callback of
# many sessions runs in one pass of the loop instead of one wake-up each: a wake-up that
# finds the CPU's caches cold costs more than the callback itself. A first run comes at
# most this much later than one period after the callback was added.
PERIODIC_GRID = 0.05
# runs of the same instant that start without a pass of the loop in between (_Instants)
WAKE_BATCH = 16


class _Instants:
    """One timer for every periodic run due at the same instant of the grid, on one loop.

    Each waiter has its own future (cancelling a task cancels the future it awaits, so they
    cannot share one), but not its own timer: a timer costs a heap entry and a handle each.
    Waiters are woken ``WAKE_BATCH`` at a time, with a pass of the loop (and its I/O) between
    two batches: 200 sessions streaming at once would otherwise hold the loop for their whole
    run, and every other session's request would wait that long.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[float, list[asyncio.Future[None]]] = {}

    def wait(self, when: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        waiters = self._waiters.get(when)
        if waiters is None:
            waiters = self._waiters[when] = []
            self._loop.call_at(when, self._fire, when)
        waiters.append(future)
        return future

    def _fire(self, when: float) -> None:
        self._wake(self._waiters.pop(when), 0)

    def _wake(self, waiters: list[asyncio.Future[None]], start: int) -> None:
        end = start + WAKE_BATCH
        for future in waiters[start:end]:
            if not future.done():
                future.set_result(None)
        if end < len(waiters):  # after the woken tasks have run, in the next pass
            self._loop.call_soon(self._wake, waiters, end)


_instants: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Instants] = (
    weakref.WeakKeyDictionary()
)


def _instants_of(loop: asyncio.AbstractEventLoop) -> _Instants:
    instants = _instants.get(loop)
    if instants is None:
        instants = _instants[loop] = _Instants(loop)
    return instants


class CallbackScheduler:
    """Runs session callbacks through ``invoke`` until they are removed or cancelled."""

    def __init__(self, invoke: Invoker, loop: asyncio.AbstractEventLoop) -> None:
        self._invoke = invoke
        self._loop = loop
        self._thread_id = threading.get_ident()
        self._handles: dict[SessionCallback, asyncio.Handle | asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] | None = None  # made when a callback first runs
        self._closed = False

    def add(self, callback: SessionCallback) -> None:
        if threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self._add, callback)
        else:
            self._add(callback)

    def remove(self, callback: SessionCallback) -> None:
        if threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self._remove, callback)
        else:
            self._remove(callback)

    def close(self) -> None:
        """Cancel every pending and running callback; nothing runs afterwards."""
        self._closed = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        for task in self._running or ():
            task.cancel()

    @property
    def busy(self) -> bool:
        """True while a next-tick callback waits or any callback is running."""
        return bool(self._running) or any(
            isinstance(callback, NextTickCallback) for callback in self._handles
        )

    def _add(self, callback: SessionCallback) -> None:
        if self._closed:
            return
        if isinstance(callback, PeriodicCallback):
            self._handles[callback] = self._loop.create_task(self._periodic(callback))
        elif isinstance(callback, TimeoutCallback):
            delay = callback.timeout / 1000
            self._handles[callback] = self._loop.call_later(delay, self._fire, callback)
        elif isinstance(callback, NextTickCallback):
            self._handles[callback] = self._loop.call_soon(self._fire, callback)
        else:
            raise TypeError(f"unknown kind of session callback: {callback!r}")

    def _remove(self, callback: SessionCallback) -> None:
        handle = self._handles.pop(callback, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, callback: SessionCallback) -> None:
        if self._handles.pop(callback, None) is None:
            return
        task = self._loop.create_task(self._invoke(callback))
        if self._running is None:
            self._running = set()
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _periodic(self, callback: PeriodicCallback) -> None:
        loop = self._loop
        instants = _instants_of(loop)
        period = callback.period / 1000
        deadline = loop.time() + period
        step = min(period, PERIODIC_GRID)
        if step > 0:
            deadline = math.ceil(deadline / step) * step
        while True:
            # on the grid's instants (rounded: sums of periods drift in the last digits)
            if deadline > loop.time():
                await instants.wait(round(deadline, 6))
            else:
                await asyncio.sleep(0)
            await self._invoke(callback)
            deadline += period
            now = loop.time()
            if deadline <= now:  # skip the runs we missed, as Tornado does
                deadline += ((now - deadline) // period + 1) * period


class _StepWithCurdoc:
    """Drives a coroutine so that ``curdoc()`` is the session's document at every step.

    bokeh 3.9 keeps curdoc on a global stack, so it cannot stay set across an
    ``await``; setting it around each synchronous step is right on both versions.
    """

    def __init__(self, coro: Any, document: Any, step: Step | None = None) -> None:
        self._coro = coro
        self._document = document
        self._step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value, error, timed = self._coro, None, None, self._step
        while True:
            with patch_curdoc(self._document):
                try:
                    resume = coro.throw if error is not None else coro.send
                    arg: Any = error if error is not None else value
                    step = resume(arg) if timed is None else timed(resume, arg)
                except StopIteration as stop:
                    return stop.value
            try:
                value, error = (yield step), None
            except BaseException as exc:
                value, error = None, exc


async def run_with_curdoc(result: Any, document: Any, step: Step | None = None) -> Any:
    """Finish what a callback returned: await it (with curdoc set) if it is awaitable; each
    step of a coroutine through ``step(resume, value)`` when given (to time it)."""
    if inspect.iscoroutine(result):
        return await _StepWithCurdoc(result, document, step)
    if inspect.isawaitable(result):
        return await result
    return result
