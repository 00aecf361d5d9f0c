"""Clear errors for Bokeh models shared between sessions (seed 000's "single document" error).

A model created at module level in an imported module is created once per process; the
second session that adds it fails with Bokeh's terse "Models must be owned by only a single
document". These helpers find the model, where it was defined, and say what to do instead.
A discarded session's document is released here too, its models marked as released so that
a later session reusing one is told why its state is gone.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bokeh.core.types import ID

from ._bokeh.documents import destroy_document

if TYPE_CHECKING:
    from bokeh.document import Document
    from bokeh.model import Model

__all__ = [
    "RELEASED",
    "explain_released_model",
    "explain_shared_model",
    "release_document",
    "released_model",
]

RELEASED = "_app_server_released_by"

_SHARED_ERROR = re.compile(r"Models must be owned by only a single document, (\w+)\(id='([^']+)'")

FIX = (
    "Bokeh models cannot be shared between sessions: create them inside a function that the "
    "app code calls for each session (def make_plot(): return figure(...)), and share only "
    "plain data (see app_server.load_once)"
)


def _where_defined(model: Model) -> str | None:
    """``module.name (file, line N)`` where ``model`` was bound at module level, if anywhere.

    Modules that assign the name in their source win over ones that only import it (such as
    the per-session modules Bokeh runs app code in).
    """
    found: list[tuple[Any, str]] = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None) or {}
        found += [(module, name) for name, value in list(namespace.items()) if value is model]
    for module, name in found:
        line = _assignment_line(module, name)
        if line is not None:
            return f"{module.__name__}.{name} ({module.__file__}, line {line})"
    return f"{found[0][0].__name__}.{found[0][1]}" if found else None


def _assignment_line(module: Any, name: str) -> int | None:
    path = getattr(module, "__file__", None)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                if re.match(rf"{re.escape(name)}\s*(:[^=]*)?=[^=]", line):
                    return number
    except OSError:
        pass
    return None


def explain_shared_model(failure: str, documents: Iterable[Document]) -> str | None:
    """A better message for a "single document" failure, or ``None`` if it is another error."""
    match = _SHARED_ERROR.search(failure)
    if match is None:
        return None
    kind, model_id = match.groups()
    model = None
    for document in documents:
        model = document.get_model_by_id(ID(model_id))
        if model is not None:
            break
    where = _where_defined(model) if model is not None else None
    origin = f", defined at module level as {where}" if where else ""
    return f"{kind}(id={model_id!r}) already belongs to another session's document{origin}. {FIX}."


def release_document(document: Document, on_change: Any, session_id: str) -> None:
    """Free a discarded session's document; a later use of one of its models is explained.

    ``on_change`` (the session, which receives the document's changes) is detached first;
    the document is then destroyed without Bokeh's per-document heap scans
    (:func:`~app_server._bokeh.documents.destroy_document`); its modules are released later.
    """
    document.remove_on_change(on_change)
    for model in document.models:  # so a reuse in a later session is reported, not silent
        setattr(model, RELEASED, session_id)
    destroy_document(document)


def released_model(document: Document) -> Model | None:
    """A model of ``document`` that belonged to a session that has been discarded."""
    for model in document.models:
        if getattr(model, RELEASED, None):
            return model
    return None


def explain_released_model(model: Model) -> str:
    where = _where_defined(model)
    origin = f" (defined at module level as {where})" if where else ""
    return (
        f"{type(model).__name__}(id={model.id!r}){origin} belonged to session "
        f"{getattr(model, RELEASED)}, which has been discarded, so its state is gone. {FIX}."
    )
