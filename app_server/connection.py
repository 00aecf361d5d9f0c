"""One websocket attached to a session: a bounded outbound queue drained by a writer task."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from . import protocol
from .protocol import CloseCode

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .metrics import Metrics
    from .session import ServerSession

__all__ = ["Connection"]

log = logging.getLogger("app_server.connection")


class Connection:
    """Frames queued by ``send`` are written in order; one message's frames never interleave.

    A client that falls ``queue_size`` messages behind is disconnected, so a slow
    reader cannot grow the server's memory.
    """

    def __init__(
        self, websocket: WebSocket, session: ServerSession, queue_size: int, metrics: Metrics
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.metrics = metrics
        self.synced = False
        self.closed = False
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
            self.metrics.slow_clients_dropped += 1
            log.warning(
                "session %s: client is %d messages behind; disconnecting it",
                self.session.id,
                self._queue.maxsize,
                extra=self.session.log_extra,
            )
            asyncio.get_running_loop().create_task(
                self.close(CloseCode.POLICY_VIOLATION, "client too slow to read its messages")
            )

    async def _write(self) -> None:
        send, metrics = self.websocket.send, self.metrics
        try:
            while True:
                frames = await self._queue.get()
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

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Stop writing and close the websocket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._writer.cancel()
        try:
            await self.websocket.close(code, reason[:120])
        except Exception as exc:
            log.debug("session %s: close failed: %r", self.session.id, exc)
