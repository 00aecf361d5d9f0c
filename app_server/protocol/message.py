"""Bokeh protocol messages and their encoding into websocket frames.

A message travels as three text frames (header, metadata, content) followed by
one text frame (buffer header) and one binary frame (payload) per buffer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from bokeh.core.serialization import Buffer

__all__ = [
    "ACK",
    "ERROR",
    "MESSAGE_TYPES",
    "OK",
    "PATCH_DOC",
    "PULL_DOC_REPLY",
    "PULL_DOC_REQ",
    "PUSH_DOC",
    "SERVER_INFO_REPLY",
    "SERVER_INFO_REQ",
    "Frame",
    "Message",
    "encode",
    "make_message",
]

ACK: Final = "ACK"
OK: Final = "OK"
ERROR: Final = "ERROR"
PATCH_DOC: Final = "PATCH-DOC"
PULL_DOC_REQ: Final = "PULL-DOC-REQ"
PULL_DOC_REPLY: Final = "PULL-DOC-REPLY"
PUSH_DOC: Final = "PUSH-DOC"
SERVER_INFO_REQ: Final = "SERVER-INFO-REQ"
SERVER_INFO_REPLY: Final = "SERVER-INFO-REPLY"

MESSAGE_TYPES: Final = frozenset(
    {
        ACK,
        OK,
        ERROR,
        PATCH_DOC,
        PULL_DOC_REQ,
        PULL_DOC_REPLY,
        PUSH_DOC,
        SERVER_INFO_REQ,
        SERVER_INFO_REPLY,
    }
)

Frame = str | bytes

_random_bits = random.Random().getrandbits  # its own generator: apps may seed the global one


def _next_msgid() -> str:
    """A fresh message id: random, so that no counter is shared by every server in a process
    (a peer only needs ids that do not repeat on its connection). Not secret, so not from the
    OS's entropy: ``secrets`` would cost a system call per message."""
    return f"{_random_bits(64):016x}"


@dataclass(slots=True)
class Message:
    """One protocol message: the three JSON fragments and its binary buffers."""

    header: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    content: Any = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)

    @property
    def msgtype(self) -> str:
        return str(self.header["msgtype"])

    @property
    def msgid(self) -> str:
        return str(self.header["msgid"])

    @property
    def reqid(self) -> str | None:
        reqid = self.header.get("reqid")
        return None if reqid is None else str(reqid)


def make_message(
    msgtype: str,
    content: Any = None,
    *,
    reqid: str | None = None,
    buffers: Sequence[Buffer] = (),
    metadata: dict[str, Any] | None = None,
) -> Message:
    """Build a message with a fresh msgid; ``num_buffers`` is set from ``buffers``."""
    header: dict[str, Any] = {"msgid": _next_msgid(), "msgtype": msgtype}
    if reqid is not None:
        header["reqid"] = reqid
    if buffers:
        header["num_buffers"] = len(buffers)
    return Message(
        header=header,
        metadata={} if metadata is None else metadata,
        content={} if content is None else content,
        buffers=list(buffers),
    )


def _default(obj: Any) -> Any:
    if isinstance(obj, Buffer):
        return obj.ref
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default)
# The same encoder's C core, made once: ``JSONEncoder.encode`` makes it again for every call (a
# third of a small message's encoding). Without the check for circular containers, which
# serialized Bokeh data cannot be: one would raise RecursionError rather than ValueError.
try:
    from _json import make_encoder  # what json.encoder uses, when CPython has it
except ImportError:  # pragma: no cover - another interpreter
    _encode_chunks = None
else:
    _encode_chunks = make_encoder(
        None, _default, encode_basestring_ascii, None, ":", ",", False, False, False
    )


def dumps(obj: Any) -> str:
    """Compact JSON, buffers written as ``{"id": ...}`` references, as BokehJS reads them."""
    if _encode_chunks is None:
        return _encoder.encode(obj)
    return "".join(_encode_chunks(obj, 0))


_HEADER_KEYS = frozenset({"msgid", "msgtype", "reqid", "num_buffers"})


def _header_json(header: dict[str, Any]) -> str:
    """The header as :func:`dumps` writes it, without the encoder's setup: every message has
    one, and the general encoder costs more than the rest of a small message's encoding."""
    msgid, msgtype = header.get("msgid"), header.get("msgtype")
    reqid, num_buffers = header.get("reqid"), header.get("num_buffers")
    if (
        not header.keys() <= _HEADER_KEYS
        or type(msgid) is not str
        or type(msgtype) is not str
        or (reqid is not None and type(reqid) is not str)
        or (num_buffers is not None and type(num_buffers) is not int)
    ):
        return dumps(header)
    quote = encode_basestring_ascii
    text = '{"msgid":' + quote(msgid) + ',"msgtype":' + quote(msgtype)
    if reqid is not None:
        text += ',"reqid":' + quote(reqid)
    if num_buffers is not None:
        text += f',"num_buffers":{num_buffers}'
    return text + "}"


def encode(message: Message) -> list[Frame]:
    """The frames of ``message``, in the order they must be sent without interleaving."""
    metadata = dumps(message.metadata) if message.metadata else "{}"
    frames: list[Frame] = [_header_json(message.header), metadata, dumps(message.content)]
    for buffer in message.buffers:
        frames.append(dumps(buffer.ref))
        frames.append(buffer.to_bytes())
    return frames
