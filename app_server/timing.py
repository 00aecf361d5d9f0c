"""How long the app's code holds the event loop: each session callback timed, the slow ones
named in the log, and the loop's lag measured all the time.

A callback that blocks the loop stalls every session of the process, and the log of a stalled
server does not say whose code did it. :class:`CallbackTimer` times every stretch of app code
the server runs on the loop (periodic, timeout and next-tick callbacks, each step of a coroutine
callback, and the ``on_change``/``on_event`` handlers an incoming change runs) on its own: a
handler run by another callback is taken out of that callback's time. A stretch longer than
``--slow-callback-threshold`` is logged with the app, the session and the callback's qualified
name, and counted. :class:`LoopLagProbe` wakes twice a second and records how late it woke,
whatever held the loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["CallbackRun", "CallbackTimer", "LoopLagProbe", "callback_name"]

log = logging.getLogger("app_server.timing")

_T = TypeVar("_T")

PROBE_INTERVAL = 0.5  # seconds between two wake-ups of the lag probe


def callback_name(func: Callable[..., Any]) -> str:
    """``module.qualname (file:line)`` of a callback, through partials and decorators."""
    while isinstance(func, functools.partial):
        func = func.func
    target = inspect.unwrap(func)
    target = getattr(target, "__func__", target)  # a bound method's function
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    # an app script's module is Bokeh's bokeh_app_<uuid>: the file name says more
    name = qualname if not module or module.startswith("bokeh_app_") else f"{module}.{qualname}"
    code = getattr(target, "__code__", None)
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


class CallbackRun:
    """One run of a callback: what it is, and how long its stretches held the loop in all."""

    __slots__ = ("app", "handlers", "held", "session_id", "what")

    def __init__(
        self, app: str, session_id: str, what: str, handlers: Sequence[Callable[..., Any]]
    ) -> None:
        self.app = app
        self.session_id = session_id
        self.what = what
        self.handlers = handlers
        self.held = 0.0

    @property
    def names(self) -> str:
        return ", ".join(callback_name(handler) for handler in self.handlers)


class CallbackTimer:
    """Times the stretches of app code run on the loop; one per server.

    Stretches nest (a callback sets a value whose ``on_change`` handler runs at once): each
    counts only its own time, so the handler that held the loop is the one named.
    """

    def __init__(self, metrics: Metrics, threshold: float) -> None:
        self.metrics = metrics
        self.threshold = threshold  # seconds; 0: nothing is logged or counted as slow
        self._nested: list[float] = []  # per open stretch: time spent in stretches within it

    def step(self, run: CallbackRun, func: Callable[..., _T], *args: Any) -> _T:
        """``func(*args)``, one stretch of ``run`` on the loop."""
        nested = self._nested
        nested.append(0.0)
        started = time.perf_counter()
        try:
            return func(*args)
        finally:
            elapsed = time.perf_counter() - started
            own = elapsed - nested.pop()
            if nested:
                nested[-1] += elapsed
            run.held += own
            if self.threshold and own > self.threshold:
                self._slow(run, own)

    def finish(self, run: CallbackRun) -> None:
        """The run is over: its time goes to the callback-duration histogram."""
        self.metrics.observe_callback(run.held)

    def call(
        self,
        app: str,
        session_id: str,
        func: Callable[[], _T],
        what: str,
        handlers: Sequence[Callable[..., Any]],
    ) -> _T:
        """A run with a single stretch (an ``on_change`` or ``on_event`` handler)."""
        run = CallbackRun(app, session_id, what, handlers)
        try:
            return self.step(run, func)
        finally:
            self.finish(run)

    def _slow(self, run: CallbackRun, seconds: float) -> None:
        self.metrics.slow_callback(run.app)
        names = run.names
        log.warning(
            "app %s, session %s: the %s %s held the event loop for %.3f s (threshold %.3f s); "
            "every session of this process waited. Run slow work off the loop: "
            "@without_document_lock with a thread, then add_next_tick_callback",
            run.app, run.session_id, run.what, names, seconds, self.threshold,
            extra={
                "app": run.app,
                "session_id": run.session_id,
                "callback": names,
                "held_seconds": round(seconds, 6),
            },
        )  # fmt: skip


class LoopLagProbe:
    """A task that sleeps ``interval`` seconds again and again and records how late it woke:
    the time something else held the loop (a blocking callback, a long serialization, GC)."""

    def __init__(
        self,
        metrics: Metrics,
        threshold: float,
        on_tick: Callable[[], None] | None = None,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.threshold = threshold
        self.interval = interval
        self._on_tick = on_tick  # the metrics' sync, with several workers
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - expected)
            self.metrics.observe_loop_lag(lag)
            if self.threshold and lag > self.threshold:
                log.debug("the event loop was held %.3f s past a %.1f s sleep", lag, self.interval)
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:
                    log.exception("updating the metrics failed")
