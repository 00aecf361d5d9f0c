"""One websocket attached to a session: a bounded outbound queue drained by a writer task."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import protocol
from .protocol import CloseCode

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .metrics import Metrics
    from .session import ServerSession

__all__ = ["Connection"]

log = logging.getLogger("app_server.connection")

CLOSE_TIMEOUT = 1.0  # seconds a close may wait on the transport


def _start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task that runs at once, up to its first real wait (Python 3.12+; later elsewhere).

    A message queued by a callback is then written in the same pass of the loop as the
    callback, while the CPU's caches are warm, instead of waking a writer task in the next.
    """
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, eager_start=True)
    return loop.create_task(coro)


class Connection:
    """Frames queued by ``send`` are written in order; one message's frames never interleave.

    A writer task exists only while there is something to write: an idle connection holds
    none. A client that falls ``queue_size`` messages behind is dropped at once and released
    from its session, so a slow or stalled reader cannot grow the server's memory or hold on
    to its session.
    """

    def __init__(
        self, websocket: WebSocket, session: ServerSession, queue_size: int, metrics: Metrics
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.metrics = metrics
        self.synced = False
        self.closed = False
        self.detached = False
        # the endpoint's release of this connection, run when the client is dropped: a client
        # that does not read may never answer the close, so nothing waits for it
        self.on_drop: Callable[[int], Awaitable[None]] | None = None
        self._closing: asyncio.Task[None] | None = None
        # a list, not an asyncio.Queue or a deque: nothing waits on it (the writer exists only
        # while there is something to write), it rarely holds more than one message, and an
        # empty list is 56 bytes where an empty deque is 760
        self._queue: list[list[protocol.Frame]] = []
        self._queue_size = queue_size
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection session={self.session.id}>"

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def send(self, frames: list[protocol.Frame]) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._queue_size:
            self.drop()
            return
        self._queue.append(frames)
        if self._writer is None or self._writer.done():
            writer = _start_eagerly(self._write())
            self._writer = None if writer.done() else writer  # idle: keep no task

    def drop(self) -> None:
        """Disconnect a client that does not keep up; nothing waits for it to read."""
        self.metrics.slow_clients_dropped += 1
        log.warning(
            "session %s: client is %d messages behind; disconnecting it",
            self.session.id,
            self._queue_size,
            extra=self.session.log_extra,
        )
        self.closed = True
        self._stop_writer()
        asyncio.get_running_loop().create_task(self._drop())

    async def _drop(self) -> None:
        # The close frame goes after what the transport already holds, whenever the client
        # reads it (or the keep-alive gives up on it); the session lets go of it now.
        self._closing = asyncio.get_running_loop().create_task(
            self._close(CloseCode.POLICY_VIOLATION, "client too slow to read its messages", None)
        )
        if self.on_drop is not None:
            await self.on_drop(CloseCode.POLICY_VIOLATION)

    async def _write(self) -> None:
        """Write what is queued, then end (``send`` starts another writer when needed)."""
        send, metrics, queue = self.websocket.send, self.metrics, self._queue
        try:
            while queue:
                frames = queue.pop(0)
                for frame in frames:
                    if isinstance(frame, str):
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
                    metrics.bytes_out += len(frame)
                metrics.messages_out += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write
            log.debug("session %s: writer stopped: %r", self.session.id, exc)
            self.closed = True

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    async def close(
        self, code: int = CloseCode.NORMAL, reason: str = "", *, drain: float = 0
    ) -> None:
        """Close the websocket (idempotent); with ``drain`` seconds, what is queued goes first."""
        if self.closed:
            return
        self.closed = True  # nothing new is queued; the writer goes on with what is
        if drain and self._writer is not None and not self._writer.done():
            _, pending = await asyncio.wait({self._writer}, timeout=drain)
            if pending:
                log.debug("session %s: gave up draining before close", self.session.id)
        self._stop_writer()
        await self._close(code, reason)

    async def _close(self, code: int, reason: str, timeout: float | None = CLOSE_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self.websocket.close(code, reason[:120]), timeout)
        except Exception as exc:
            log.debug("session %s: close failed: %r", self.session.id, exc)
