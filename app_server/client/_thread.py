"""A private event loop in one daemon thread, where synchronous callers' sessions live.

Blocking calls hand coroutines to it with ``run_coroutine_threadsafe``, so they work the
same from plain scripts and from threads that run their own event loop (a Flask view, a
FastAPI route), whose loop this module never touches.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["in_client_thread", "run"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _client_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, ready), name="app_server.client", daemon=True
            )
            thread.start()
            ready.wait()
            if _loop is None:
                atexit.register(_stop)
            _loop, _thread = loop, thread
        return _loop


def _stop() -> None:
    """At exit: cancel what still runs and close the loop, so nothing is left half-open."""
    with _lock:
        loop, thread = _loop, _thread
    if loop is not None and thread is not None and thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def in_client_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the client loop and wait for its result in the calling thread."""
    if in_client_thread():
        coro.close()
        raise RuntimeError(
            "a blocking client call was made from the client's own event loop thread (in a "
            "callback of a synchronous session?); use app_server.client.ClientSession and "
            "await it instead"
        )
    future = asyncio.run_coroutine_threadsafe(coro, _client_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
