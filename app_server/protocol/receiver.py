"""Sans-I/O assembly of websocket frames into protocol messages.

The receiver is a small state machine: it never raises on bad input; it returns
a :class:`ProtocolViolation` carrying the websocket close code that the I/O layer
should use, and refuses further input afterwards.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from bokeh.core.serialization import Buffer
from bokeh.core.types import ID

from .message import Frame, Message

__all__ = ["CloseCode", "ProtocolViolation", "Receiver", "close_reason"]


class CloseCode(enum.IntEnum):
    """Websocket close codes (RFC 6455, section 7.4.1) used by app_server."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


MAX_CLOSE_REASON = 123  # bytes of UTF-8 a close frame's reason may hold (RFC 6455, 5.5)


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame can carry: 123 bytes of UTF-8, whole characters."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """Input that cannot be a Bokeh message; the connection must close with ``code``."""

    code: CloseCode
    reason: str


class _State(enum.Enum):
    HEADER = "header"
    METADATA = "metadata"
    CONTENT = "content"
    BUFFER_HEADER = "buffer header"
    BUFFER_PAYLOAD = "buffer payload"
    FAILED = "failed"


MAX_BUFFERS = 10_000


class Receiver:
    """Turns the frames of one connection into :class:`Message` objects."""

    def __init__(self, max_message_size: int | None = None) -> None:
        self._max_size = max_message_size
        self._reset()
        self.violation: ProtocolViolation | None = None

    def _reset(self) -> None:
        self._state = _State.HEADER
        self._fragments: list[Any] = []
        self._buffers: list[Buffer] = []
        self._buffer_id: str | None = None
        self._num_buffers = 0
        self._size = 0

    @property
    def expecting(self) -> str:
        """The part of a message the next frame must be (for error messages and tests)."""
        return self._state.value

    def receive_frame(self, frame: Frame) -> Message | ProtocolViolation | None:
        """Consume one frame: a complete message, a violation, or ``None`` for "need more"."""
        if self.violation is not None:
            return self.violation
        # UTF-8 bytes, as on the wire; str.isascii() is O(1), so only non-ASCII text is encoded
        size = len(frame) if isinstance(frame, bytes) or frame.isascii() else len(frame.encode())
        self._size += size
        if self._max_size is not None and self._size > self._max_size:
            return self._fail(
                CloseCode.MESSAGE_TOO_BIG,
                f"message exceeds the limit of {self._max_size} bytes",
            )
        if self._state is _State.BUFFER_PAYLOAD:
            if not isinstance(frame, bytes):
                return self._fail(
                    CloseCode.UNSUPPORTED_DATA, "expected a binary frame for a buffer payload"
                )
            assert self._buffer_id is not None
            self._buffers.append(Buffer(ID(self._buffer_id), frame))
            return self._after_part()
        if not isinstance(frame, str):
            return self._fail(
                CloseCode.UNSUPPORTED_DATA, f"expected a text frame for the {self.expecting}"
            )
        try:
            value = json.loads(frame)
        except ValueError:
            return self._fail(CloseCode.INVALID_DATA, f"the {self.expecting} is not valid JSON")
        except RecursionError:
            return self._fail(CloseCode.INVALID_DATA, f"the {self.expecting} is nested too deeply")
        return self._accept_json(value)

    def _accept_json(self, value: Any) -> Message | ProtocolViolation | None:
        state = self._state
        if state is _State.HEADER:
            problem = _check_header(value)
            if problem:
                return self._fail(CloseCode.PROTOCOL_ERROR, problem)
            self._num_buffers = value.get("num_buffers", 0)
            self._fragments.append(value)
            self._state = _State.METADATA
            return None
        if state is _State.METADATA:
            if not isinstance(value, dict):
                return self._fail(CloseCode.PROTOCOL_ERROR, "the metadata must be a JSON object")
            self._fragments.append(value)
            self._state = _State.CONTENT
            return None
        if state is _State.CONTENT:
            self._fragments.append(value)
            return self._after_part()
        # buffer header
        if not (isinstance(value, dict) and set(value) == {"id"} and isinstance(value["id"], str)):
            return self._fail(CloseCode.PROTOCOL_ERROR, 'a buffer header must be {"id": <str>}')
        self._buffer_id = value["id"]
        self._state = _State.BUFFER_PAYLOAD
        return None

    def _after_part(self) -> Message | None:
        if len(self._buffers) < self._num_buffers:
            self._state = _State.BUFFER_HEADER
            return None
        header, metadata, content = self._fragments
        message = Message(header=header, metadata=metadata, content=content, buffers=self._buffers)
        self._reset()
        return message

    def _fail(self, code: CloseCode, reason: str) -> ProtocolViolation:
        self._state = _State.FAILED
        self.violation = ProtocolViolation(code, reason)
        return self.violation


def _check_header(header: Any) -> str | None:
    if not isinstance(header, dict):
        return "the header must be a JSON object"
    for key in ("msgid", "msgtype"):
        if not isinstance(header.get(key), str):
            return f"the header needs a string {key!r}"
    num_buffers = header.get("num_buffers", 0)
    if type(num_buffers) is not int or not 0 <= num_buffers <= MAX_BUFFERS:
        return f"num_buffers must be an integer from 0 to {MAX_BUFFERS}"
    return None
