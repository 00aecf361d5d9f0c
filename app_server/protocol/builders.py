"""Messages that the server and the client build from Bokeh documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bokeh import __version__ as bokeh_version
from bokeh.core.serialization import Buffer, Ref, Serialized
from bokeh.model import Model

from .._bokeh.documents import new_models
from .message import (
    ERROR,
    OK,
    PATCH_DOC,
    PULL_DOC_REPLY,
    PUSH_DOC,
    SERVER_INFO_REPLY,
    Message,
    make_message,
)
from .serializer import Serializer, document_json

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.document.events import DocumentPatchedEvent

__all__ = [
    "document_of",
    "error",
    "ok",
    "patch_doc",
    "patch_of",
    "patch_of_serialized",
    "pull_doc_reply",
    "push_doc",
    "serialize_events",
    "server_info_reply",
]

SERVER_VERSION = "app_server"


def ok(reqid: str) -> Message:
    return make_message(OK, reqid=reqid)


def error(reqid: str, text: str) -> Message:
    """An ERROR reply; the traceback stays in the server log, never on the wire."""
    return make_message(ERROR, {"text": text, "traceback": None}, reqid=reqid)


def server_info_reply(reqid: str) -> Message:
    version_info = {"bokeh": bokeh_version, "server": bokeh_version}
    return make_message(SERVER_INFO_REPLY, {"version_info": version_info}, reqid=reqid)


# BokehJS 3.9 drops a PULL-DOC-REPLY's binary buffers when it pulls a document again after a
# reconnect (ClientConnection._repull_session_doc calls replace_with_json without them; 3.10
# passes them), so a reconnected tab whose document holds an array fails to load it and gives
# up. On bokeh 3.9 the reply carries its arrays in the JSON, base64, as to_json(deferred=False).
INLINE_PULLED_BUFFERS = tuple(int(part) for part in bokeh_version.split(".")[:2]) < (3, 10)


def _doc_message(
    msgtype: str, document: Document, reqid: str | None = None, *, inline_buffers: bool = False
) -> Message:
    serialized = document_json(document, inline_buffers=inline_buffers)
    return make_message(
        msgtype, {"doc": serialized.content}, reqid=reqid, buffers=serialized.buffers or ()
    )


def pull_doc_reply(reqid: str, document: Document) -> Message:
    return _doc_message(PULL_DOC_REPLY, document, reqid, inline_buffers=INLINE_PULLED_BUFFERS)


def push_doc(document: Document) -> Message:
    return _doc_message(PUSH_DOC, document)


class _PatchSerializer(Serializer):
    """Models the peer already has go as references, looked up when the patch meets them.

    Bokeh's ``Serializer(references=document.models.synced_references)`` builds a reference
    for every model of the document on each patch, a large share of a small patch's cost.
    """

    def __init__(self, document: Document) -> None:
        super().__init__()
        self._references_by_id = self.references_by_id  # bound once: get_ref runs per object
        self._model_by_id = document.models.get_by_id
        self._new = new_models(document)

    def get_ref(self, obj: Any) -> Ref | None:
        ref = self._references_by_id.get(id(obj))
        if (
            ref is None
            and isinstance(obj, Model)
            and self._model_by_id(obj.id) is obj
            and obj not in self._new
        ):
            ref = self._references_by_id[id(obj)] = obj.ref
        return ref

    def has_ref(self, obj: Any) -> bool:
        return self.get_ref(obj) is not None


def patch_doc(events: Sequence[DocumentPatchedEvent], document: Document) -> Message:
    """One PATCH-DOC for ``events``; models already sent to the peer go as references."""
    serializer = _PatchSerializer(document)
    content = {"events": serializer.encode(list(events))}
    document.models.flush_synced(lambda model: not serializer.has_ref(model))
    return make_message(PATCH_DOC, content, buffers=serializer.buffers)


def serialize_events(
    events: Sequence[DocumentPatchedEvent], document: Document
) -> list[tuple[Any, list[Buffer]]]:
    """Each event's serialized form with the buffers it uses, for :func:`patch_of_serialized`.

    The events share one serializer, so a model new to the peer is defined once (at its first
    use) and referenced afterwards; models already sent go as references.
    """
    serializer = _PatchSerializer(document)
    serialized = []
    for event in events:
        start = serializer.buffer_count()
        rep = serializer.encode(event)
        serialized.append((rep, serializer.buffers_from(start)))
    document.models.flush_synced(lambda model: not serializer.has_ref(model))
    return serialized


def patch_of_serialized(serialized: Sequence[tuple[Any, list[Buffer]]]) -> Message:
    """One PATCH-DOC carrying events serialized by :func:`serialize_events`."""
    buffers = [buffer for _, event_buffers in serialized for buffer in event_buffers]
    content = {"events": [rep for rep, _ in serialized]}
    return make_message(PATCH_DOC, content, buffers=buffers)


def document_of(message: Message) -> Serialized[Any]:
    """The serialized document of a PUSH-DOC or PULL-DOC-REPLY, ready for ``Document``."""
    content = message.content
    if not isinstance(content, dict) or not isinstance(content.get("doc"), dict):
        raise ValueError(f"{message.msgtype} needs a 'doc' object in its content")
    return Serialized(content["doc"], message.buffers)


def patch_of(message: Message) -> Serialized[Any]:
    """The serialized patch of a PATCH-DOC, ready for ``Document.apply_json_patch``."""
    content = message.content
    if not isinstance(content, dict) or not isinstance(content.get("events"), list):
        raise ValueError("PATCH-DOC needs an 'events' list in its content")
    return Serialized(content, message.buffers)
