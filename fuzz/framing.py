"""A model of Bokeh's websocket framing, written from the protocol's rules, not from app_server.

A Bokeh message is three text frames (header, metadata, content), each one JSON document, then
two frames for each of the ``num_buffers`` the header announces: a text buffer header
``{"id": <str>}`` and a binary payload. :class:`Framing` reads the frames of one connection and
says, frame by frame, whether a message is complete, more is needed, or the connection must
close, and with which RFC 6455 code:

- 1009: the frames of one message, text counted in UTF-8 bytes, exceed the size limit (checked
  as each frame arrives, before anything else about it);
- 1003: a binary frame where a text frame belongs, or text where a buffer's payload belongs;
- 1007: a text frame that is not JSON, as Python's ``json`` reads it (``NaN`` and ``Infinity``
  pass; nesting too deep for the parser does not);
- 1002: a header that is not an object with string ``msgid`` and ``msgtype`` and, if present,
  an integer ``num_buffers`` (not a boolean) from 0 to :data:`MAX_BUFFERS`; metadata that is
  not an object; a buffer header other than exactly ``{"id": <str>}``.

The content may be any JSON value. After a violation the connection is over: every later frame
gets the same violation. The fuzzer's oracle predicts app_server's closes with this model, the
raw websocket client reads the server's messages with it, and the test suite's property tests
check that app_server's ``Receiver`` agrees with it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ACK",
    "ERROR",
    "MAX_BUFFERS",
    "OK",
    "PATCH_DOC",
    "PULL_DOC_REPLY",
    "PULL_DOC_REQ",
    "PUSH_DOC",
    "SERVER_INFO_REPLY",
    "SERVER_INFO_REQ",
    "BokehMessage",
    "Buffer",
    "Framing",
    "Outgoing",
    "Violation",
    "encode",
    "new_message",
]

# Bokeh's message types
ACK, OK, ERROR = "ACK", "OK", "ERROR"
PATCH_DOC, PUSH_DOC = "PATCH-DOC", "PUSH-DOC"
PULL_DOC_REQ, PULL_DOC_REPLY = "PULL-DOC-REQ", "PULL-DOC-REPLY"
SERVER_INFO_REQ, SERVER_INFO_REPLY = "SERVER-INFO-REQ", "SERVER-INFO-REPLY"

MAX_BUFFERS = 10_000  # app_server's cap on num_buffers (a header may not ask for a million)

PROTOCOL_ERROR, UNSUPPORTED_DATA, INVALID_DATA, MESSAGE_TOO_BIG = 1002, 1003, 1007, 1009


@dataclass(frozen=True)
class Buffer:
    id: str
    data: bytes

    def to_bytes(self) -> bytes:
        return self.data


@dataclass
class BokehMessage:
    """One Bokeh message as Python values."""

    header: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    content: Any = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)

    @property
    def msgtype(self) -> str:
        return str(self.header.get("msgtype"))

    @property
    def msgid(self) -> str:
        return str(self.header.get("msgid"))

    @property
    def reqid(self) -> str | None:
        reqid = self.header.get("reqid")
        return None if reqid is None else str(reqid)


@dataclass(frozen=True)
class Violation:
    """Frames that cannot be Bokeh messages: the connection must close with ``code``."""

    code: int
    reason: str


class _OutBuffer(Protocol):
    @property
    def id(self) -> str: ...

    def to_bytes(self) -> bytes: ...


class Outgoing(Protocol):
    """Anything shaped like a message: a :class:`BokehMessage`, or app_server's ``Message``."""

    @property
    def header(self) -> dict[str, Any]: ...

    @property
    def metadata(self) -> dict[str, Any]: ...

    @property
    def content(self) -> Any: ...

    @property
    def buffers(self) -> Sequence[_OutBuffer]: ...


_msgids = itertools.count(1)


def new_message(msgtype: str, content: Any = None, *, reqid: str | None = None) -> BokehMessage:
    """A message with a fresh msgid (``fz1``, ``fz2``, ...)."""
    header: dict[str, Any] = {"msgid": f"fz{next(_msgids)}", "msgtype": msgtype}
    if reqid is not None:
        header["reqid"] = reqid
    return BokehMessage(header, {}, {} if content is None else content)


def encode(message: Outgoing) -> list[str | bytes]:
    """The frames of a message, in strict JSON (``num_buffers`` is the caller's business)."""

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    frames: list[str | bytes] = [
        dumps(message.header),
        dumps(message.metadata),
        dumps(message.content),
    ]
    for buffer in message.buffers:
        frames += [dumps({"id": str(buffer.id)}), buffer.to_bytes()]
    return frames


_PART_NAMES = ("header", "metadata", "content")


class Framing:
    """The frames of one connection, read as Bokeh messages (see the module's docstring)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.violation: Violation | None = None
        self._parts: list[Any] = []  # header, metadata, content, then buffer ids and payloads
        self._size = 0  # bytes of the message so far

    def _expected(self) -> str:
        """What the next frame of the current message must be."""
        n = len(self._parts)
        if n < 3:
            return _PART_NAMES[n]
        return "buffer header" if (n - 3) % 2 == 0 else "buffer payload"

    def _violate(self, code: int, reason: str) -> Violation:
        self.violation = Violation(code, reason)
        return self.violation

    def feed(self, frame: str | bytes) -> BokehMessage | Violation | None:
        """Read one frame: a whole message, a violation, or None when more must come."""
        if self.violation is not None:
            return self.violation
        expected = self._expected()
        if isinstance(frame, str):
            self._size += len(frame.encode("utf-8", "surrogatepass"))
        else:
            self._size += len(frame)
        if self.limit is not None and self._size > self.limit:
            return self._violate(MESSAGE_TOO_BIG, f"a message over {self.limit} bytes")
        if expected == "buffer payload":
            if not isinstance(frame, bytes):
                return self._violate(UNSUPPORTED_DATA, "text where a buffer payload belongs")
            self._parts.append(frame)
            return self._complete()
        if not isinstance(frame, str):
            return self._violate(UNSUPPORTED_DATA, f"binary where the {expected} belongs")
        try:
            value = json.loads(frame)
        except (ValueError, RecursionError):
            return self._violate(INVALID_DATA, f"the {expected} is not JSON")
        problem = _problem(expected, value)
        if problem:
            return self._violate(PROTOCOL_ERROR, problem)
        self._parts.append(value)
        return self._complete() if len(self._parts) >= 3 else None

    def _complete(self) -> BokehMessage | None:
        header, metadata, content, *pairs = self._parts
        announced = header.get("num_buffers", 0)
        if len(pairs) < 2 * announced:
            return None
        buffers = [Buffer(pairs[i]["id"], pairs[i + 1]) for i in range(0, len(pairs), 2)]
        self._parts, self._size = [], 0
        return BokehMessage(header, metadata, content, buffers)


def _problem(part: str, value: Any) -> str | None:
    """Why a JSON value cannot be this part of a message (None: it can)."""
    if part == "header":
        if not isinstance(value, dict):
            return "the header is not an object"
        if not isinstance(value.get("msgid"), str) or not isinstance(value.get("msgtype"), str):
            return "the header lacks a string msgid or msgtype"
        count = value.get("num_buffers", 0)
        if isinstance(count, bool) or not isinstance(count, int):
            return "num_buffers is not an integer"
        if count < 0 or count > MAX_BUFFERS:
            return f"num_buffers is outside 0..{MAX_BUFFERS}"
        return None
    if part == "metadata":
        return None if isinstance(value, dict) else "the metadata is not an object"
    if part == "buffer header":
        if isinstance(value, dict) and list(value) == ["id"] and isinstance(value["id"], str):
            return None
        return 'a buffer header is not {"id": <str>}'
    return None  # the content: any JSON
