"""One websocket attached to a session: a bounded outbound queue drained by a writer task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from . import protocol
from .protocol import CloseCode

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .metrics import Metrics
    from .session import ServerSession

__all__ = ["Connection"]

log = logging.getLogger("app_server.connection")

CLOSE_TIMEOUT = 1.0  # seconds a close may wait on the transport


class Connection:
    """Frames queued by ``send`` are written in order; one message's frames never interleave.

    A client that falls ``queue_size`` messages behind is dropped at once and released from
    its session, so a slow or stalled reader cannot grow the server's memory or hold on to
    its session.
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
        self._queue: asyncio.Queue[list[protocol.Frame]] = asyncio.Queue(queue_size)
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def __repr__(self) -> str:
        return f"<Connection session={self.session.id}>"

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def send(self, frames: list[protocol.Frame]) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(frames)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        """Disconnect a client that does not keep up; nothing waits for it to read."""
        self.metrics.slow_clients_dropped += 1
        log.warning(
            "session %s: client is %d messages behind; disconnecting it",
            self.session.id,
            self._queue.maxsize,
            extra=self.session.log_extra,
        )
        self.closed = True
        self._writer.cancel()
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
        send, metrics, queue = self.websocket.send, self.metrics, self._queue
        try:
            while True:
                frames = await queue.get()
                for frame in frames:
                    if isinstance(frame, str):
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
                    metrics.bytes_out += len(frame)
                metrics.messages_out += 1
                queue.task_done()
                del frames, frame  # an idle connection must not pin its last message
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write
            log.debug("session %s: writer stopped: %r", self.session.id, exc)
            self.closed = True

    async def close(
        self, code: int = CloseCode.NORMAL, reason: str = "", *, drain: float = 0
    ) -> None:
        """Close the websocket (idempotent); with ``drain`` seconds, what is queued goes first."""
        if self.closed:
            return
        self.closed = True  # nothing new is queued; the writer goes on with what is
        if drain:
            try:
                await asyncio.wait_for(self._queue.join(), drain)
            except TimeoutError:
                log.debug("session %s: gave up draining before close", self.session.id)
        self._writer.cancel()
        await self._close(code, reason)

    async def _close(self, code: int, reason: str, timeout: float | None = CLOSE_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self.websocket.close(code, reason[:120]), timeout)
        except Exception as exc:
            log.debug("session %s: close failed: %r", self.session.id, exc)
