"""Where Bokeh runs an app's ``on_change`` and ``on_event`` handlers, so that they can be timed;
and the app's own function inside the wrapper Bokeh puts around a session callback.

Bokeh calls them from its ``DocumentCallbackManager`` (``trigger_on_change`` runs a property's
handlers, ``notify_event`` a model's event handlers, ``trigger_event`` the document's), with no
hook around a handler. :func:`time_handlers` gives one document's manager instance attributes
that wrap those three methods (other documents, and the class, are untouched).

Why not public: the handlers a model holds are only in ``PropertyCallbackManager._callbacks``
and ``EventCallbackManager._event_callbacks``; they name the code that ran.

``Document.add_periodic_callback`` (and the timeout and next-tick ones) store the app's function
wrapped by ``bokeh.document.callbacks._wrap_with_curdoc``, which sets curdoc to the document on
every call, with a new closure and ``functools.wraps`` each time: a few microseconds of every
streamed message. The session sets curdoc itself around a locked run, so it calls the app's
function (:func:`app_function`); nothing public gives it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from bokeh.document.callbacks import _wrap_with_curdoc
from bokeh.io.doc import curdoc

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ["Timed", "app_function", "time_handlers", "untime_handlers"]

# run(call, what, handlers): call() (timed), ``what`` ran, naming ``handlers``; call's result
Timed = Callable[[Callable[[], Any], str, Sequence[Callable[..., Any]]], Any]

_WRAPPED = ("trigger_on_change", "notify_event", "trigger_event")


def time_handlers(document: Document, timed: Timed) -> None:
    """Run every handler ``document``'s models and the document itself hold through ``timed``."""
    manager = document.callbacks
    wrappers = _TimedHandlers(manager, timed)
    for name in _WRAPPED:
        setattr(manager, name, getattr(wrappers, name))


class _TimedHandlers:
    """One document's three wrappers: an object with slots and its bound methods, a third of
    what three closures and their cells hold for every session."""

    __slots__ = ("manager", "run_document_event", "run_model_event", "run_on_change", "timed")

    def __init__(self, manager: Any, timed: Timed) -> None:
        self.manager = manager
        self.timed = timed
        self.run_on_change = manager.trigger_on_change
        self.run_model_event = manager.notify_event
        self.run_document_event = manager.trigger_event

    def trigger_on_change(self, event: Any) -> None:
        manager = self.manager
        if manager.hold_value is not None:  # Bokeh collects or combines it: nothing runs now
            return self.run_on_change(event)  # type: ignore[no-any-return]
        # Bokeh's sets curdoc to the document twice per change (around the property's handlers,
        # then around the document's change callbacks); inside a session's locked run it is set
        run: Callable[[Any], Any] = (
            self._run_here if _curdoc_manager() is manager else self.run_on_change
        )
        model, attr = getattr(event, "model", None), getattr(event, "attr", None)
        handlers = getattr(model, "_callbacks", {}).get(attr) if attr else None
        if not handlers:
            return run(event)  # type: ignore[no-any-return]
        what = f"on_change handler of {type(model).__name__}.{attr}"
        return self.timed(partial(run, event), what, list(handlers))  # type: ignore[no-any-return]

    def _run_here(self, event: Any) -> None:
        """Bokeh's ``trigger_on_change`` once no change is held, with curdoc left as it is."""
        invoker = event.callback_invoker
        if invoker is not None:
            invoker()
        for callback in self.manager.change_callbacks():
            callback(event)

    def notify_event(self, model: Any, event: Any, invoker: Callable[[], None]) -> None:
        handlers = getattr(model, "_event_callbacks", {}).get(event.event_name)
        if not handlers:
            return self.run_model_event(model, event, invoker)  # type: ignore[no-any-return]
        what = f"on_event handler of {type(model).__name__} {event.event_name}"
        call = partial(self.run_model_event, model, event, invoker)
        return self.timed(call, what, list(handlers))  # type: ignore[no-any-return]

    def trigger_event(self, event: Any) -> None:
        handlers = self.manager.event_callbacks_for_event_name(event.event_name)
        if not handlers:
            return self.run_document_event(event)  # type: ignore[no-any-return]
        what = f"document on_event handler of {event.event_name}"
        return self.timed(partial(self.run_document_event, event), what, list(handlers))  # type: ignore[no-any-return]


def _curdoc_manager() -> Any:
    """The callback manager of the document ``curdoc()`` is; None for an unlocked callback's
    proxy, or when the document patched in has been collected (``curdoc()`` raises)."""
    try:
        return getattr(curdoc(), "callbacks", None)
    except RuntimeError:
        return None


def untime_handlers(document: Document) -> None:
    """Undo :func:`time_handlers` (the wrappers hold the session: no cycle is left behind)."""
    attributes = vars(document.callbacks)
    for name in _WRAPPED:
        attributes.pop(name, None)


_CURDOC_WRAPPER = _wrap_with_curdoc(None, lambda: None).__code__  # type: ignore[arg-type]
_DOC_CELL = _CURDOC_WRAPPER.co_freevars.index("doc")
_FUNC_CELL = _CURDOC_WRAPPER.co_freevars.index("f")


def app_function(callback: Callable[..., Any], document: Document) -> Callable[..., Any]:
    """The function Bokeh's curdoc wrapper calls, when ``callback`` is that wrapper for
    ``document``; otherwise ``callback`` itself."""
    if getattr(callback, "__code__", None) is not _CURDOC_WRAPPER:
        return callback
    cells = callback.__closure__ or ()
    if cells[_DOC_CELL].cell_contents is not document:
        return callback
    return cells[_FUNC_CELL].cell_contents  # type: ignore[no-any-return]
