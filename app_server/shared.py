"""Large read-only data loaded once per process and shared by every session.

Bokeh runs an app's code for every session, so data loaded there is loaded again for every
browser tab (the memory growth users report). Load it once instead::

    from app_server import load_once, shared

    @load_once
    def load_prices():            # runs once per process, however many sessions ask at once
        return pd.read_parquet("prices.parquet")

    # or, in server_lifecycle.py:
    def on_server_loaded(server_context):
        shared["prices"] = load_prices()

Treat what is shared as read-only: every session sees the same object. Bokeh models are
never shareable (each session needs its own); wrap shared data in a new ColumnDataSource
per session.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["load_once", "shared"]

T = TypeVar("T")

shared: dict[str, Any] = {}
"""Process-wide values for every app and session (set them in ``on_server_loaded``)."""


def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    return (args, tuple(sorted(kwargs.items())))


def load_once(func: Callable[..., T]) -> Callable[..., T]:
    """Compute ``func(*args)`` once per process and argument set; later calls share the result.

    Concurrent first calls (from threads, or coroutines for an ``async def``) wait for the one
    computation instead of starting their own. A call that raises is not cached.
    """
    if inspect.iscoroutinefunction(func):
        return _load_once_async(func)
    results: dict[Hashable, T] = {}
    locks: dict[Hashable, threading.Lock] = {}
    guard = threading.Lock()

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        key = _key(args, kwargs)
        if key in results:
            return results[key]
        with guard:
            lock = locks.setdefault(key, threading.Lock())
        with lock:
            if key not in results:
                results[key] = func(*args, **kwargs)
            return results[key]

    wrapper.cache_clear = results.clear  # type: ignore[attr-defined]
    return wrapper


def _load_once_async(func: Callable[..., Any]) -> Callable[..., Any]:
    pending: dict[Hashable, asyncio.Future[Any]] = {}

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = _key(args, kwargs)
        future = pending.get(key)
        if future is None:
            future = pending[key] = asyncio.ensure_future(func(*args, **kwargs))
            future.add_done_callback(
                lambda done: pending.pop(key, None) if done.exception() is not None else None
            )
        return await asyncio.shield(future)

    wrapper.cache_clear = pending.clear  # type: ignore[attr-defined]
    return wrapper
