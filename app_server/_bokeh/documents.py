"""A Document's session context, its destruction, and the models its peer has not seen."""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bokeh.application.application import SessionContext
    from bokeh.document import Document
    from bokeh.model import Model

__all__ = ["attach_session_context", "destroy_document", "new_models", "release_modules"]


def attach_session_context(document: Document, context: SessionContext) -> None:
    """Make ``context`` the document's ``session_context`` (held weakly, as Bokeh holds it).

    Why not public: ``Document.session_context`` is read-only; Bokeh's own server sets the
    private ``Document._session_context`` weakref, and the app code reads it through curdoc().
    """
    document._session_context = weakref.ref(context)


def _dead() -> None:
    return None


def destroy_document(document: Document) -> None:
    """``Document.destroy`` without its per-document ``gc.collect()`` nor its heap scans.

    Bokeh collects the whole heap for every discarded session, which costs about as
    much as running a small app; the server collects once per reaper pass instead.
    Afterwards adding a callback to the document raises (Bokeh's "already-destroyed
    Document" error), so a thread that outlives its session stops instead of leaking.
    The caller removes its own ``on_change`` receiver first, and releases the app code's
    modules (:func:`release_modules`) once the session's destroy hooks have run: those hooks
    may read the module's globals, which ``Document.destroy`` clears before they run.

    Why not public: ``Document.destroy`` always runs ``gc.collect()`` and
    ``DocumentModuleManager.destroy``'s ``gc.get_referrers`` scan; the parts it is made of
    that are not public methods (``_roots``, ``_session_context``, the callback manager's
    document weakref, the module list) are private attributes.
    """
    document._roots = []
    document._session_context = None
    document.callbacks.destroy()
    document.callbacks._document = _dead  # type: ignore[assignment]
    document.models.destroy()


def release_modules(document: Document) -> None:
    """``DocumentModuleManager.destroy`` without its ``gc.get_referrers`` heap scan per module.

    Bokeh scans the whole heap for each discarded session's module to warn about leaks; with
    hundreds of sessions that scan dominates (and stalls the loop). Leaks are what the memory
    tests watch for instead.

    Why not public: the manager's module list is its private ``_modules``; its public
    ``destroy`` is the scan.
    """
    manager = document.modules
    for module in manager._modules:
        sys.modules.pop(module.__name__, None)
        module.__dict__.clear()
    manager._modules = []


def new_models(document: Document) -> set[Model]:
    """The document's models not yet sent to its peer (the live set, not a copy).

    Why not public: ``DocumentModelManager`` exposes only ``synced_references``, a new set of
    every other model built on each call, the cost a patch's serializer avoids.
    """
    return document.models._new_models
