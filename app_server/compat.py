"""The few places where bokeh 3.9 and 3.10 differ, or where we need Bokeh internals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bokeh

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ["BOKEH_VERSION", "release_document"]

BOKEH_VERSION: tuple[int, int] = tuple(int(p) for p in bokeh.__version__.split(".")[:2])  # type: ignore[assignment]


def release_document(document: Document, receiver: Any) -> None:
    """``Document.destroy`` without its per-document ``gc.collect()``.

    Bokeh collects the whole heap for every discarded session, which costs about as
    much as running a small app; the server collects once per reaper pass instead.
    """
    document.remove_on_change(receiver)
    document._roots = []
    document._session_context = None
    document.callbacks.destroy()
    document.models.destroy()
    document.modules.destroy()
