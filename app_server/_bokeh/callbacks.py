"""Where Bokeh runs an app's ``on_change`` and ``on_event`` handlers, so that they can be timed.

Bokeh calls them from its ``DocumentCallbackManager`` (``trigger_on_change`` runs a property's
handlers, ``notify_event`` a model's event handlers, ``trigger_event`` the document's), with no
hook around a handler. :func:`time_handlers` gives one document's manager instance attributes
that wrap those three methods (other documents, and the class, are untouched).

Why not public: the handlers a model holds are only in ``PropertyCallbackManager._callbacks``
and ``EventCallbackManager._event_callbacks``; they name the code that ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ["Timed", "time_handlers", "untime_handlers"]

# run(call, what, handlers): call() (timed), ``what`` ran, naming ``handlers``; call's result
Timed = Callable[[Callable[[], Any], str, Sequence[Callable[..., Any]]], Any]

_WRAPPED = ("trigger_on_change", "notify_event", "trigger_event")


def time_handlers(document: Document, timed: Timed) -> None:
    """Run every handler ``document``'s models and the document itself hold through ``timed``."""
    manager = document.callbacks
    trigger_on_change = manager.trigger_on_change
    notify_event = manager.notify_event
    trigger_event = manager.trigger_event

    def timed_trigger_on_change(event: Any) -> None:
        model, attr = getattr(event, "model", None), getattr(event, "attr", None)
        handlers = getattr(model, "_callbacks", {}).get(attr) if attr else None
        if not handlers or manager.hold_value is not None:
            return trigger_on_change(event)
        what = f"on_change handler of {type(model).__name__}.{attr}"
        return timed(partial(trigger_on_change, event), what, list(handlers))  # type: ignore[no-any-return]

    def timed_notify_event(model: Any, event: Any, invoker: Callable[[], None]) -> None:
        handlers = getattr(model, "_event_callbacks", {}).get(event.event_name)
        if not handlers:
            return notify_event(model, event, invoker)
        what = f"on_event handler of {type(model).__name__} {event.event_name}"
        return timed(partial(notify_event, model, event, invoker), what, list(handlers))  # type: ignore[no-any-return]

    def timed_trigger_event(event: Any) -> None:
        handlers = manager.event_callbacks_for_event_name(event.event_name)
        if not handlers:
            return trigger_event(event)
        what = f"document on_event handler of {event.event_name}"
        return timed(partial(trigger_event, event), what, list(handlers))  # type: ignore[no-any-return]

    setattr(manager, "trigger_on_change", timed_trigger_on_change)  # noqa: B010
    setattr(manager, "notify_event", timed_notify_event)  # noqa: B010
    setattr(manager, "trigger_event", timed_trigger_event)  # noqa: B010


def untime_handlers(document: Document) -> None:
    """Undo :func:`time_handlers` (the wrappers hold the session: no cycle is left behind)."""
    attributes = vars(document.callbacks)
    for name in _WRAPPED:
        attributes.pop(name, None)
