"""The Bokeh websocket protocol without I/O: frames in, messages out, and back.

Nothing here imports asyncio, sockets or Starlette (a test keeps it so).
"""

from .builders import (
    document_of,
    error,
    ok,
    patch_doc,
    patch_of,
    patch_of_serialized,
    pull_doc_reply,
    push_doc,
    serialize_events,
    server_info_reply,
)
from .message import (
    ACK,
    ERROR,
    MESSAGE_TYPES,
    OK,
    PATCH_DOC,
    PULL_DOC_REPLY,
    PULL_DOC_REQ,
    PUSH_DOC,
    SERVER_INFO_REPLY,
    SERVER_INFO_REQ,
    Frame,
    Message,
    encode,
    make_message,
)
from .receiver import CloseCode, ProtocolViolation, Receiver, close_reason

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
    "CloseCode",
    "Frame",
    "Message",
    "ProtocolViolation",
    "Receiver",
    "close_reason",
    "document_of",
    "encode",
    "error",
    "make_message",
    "ok",
    "patch_doc",
    "patch_of",
    "patch_of_serialized",
    "pull_doc_reply",
    "push_doc",
    "serialize_events",
    "server_info_reply",
]
