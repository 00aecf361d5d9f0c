"""The few places where bokeh 3.9 and 3.10 differ, or where we need Bokeh internals."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

import bokeh.io.doc

from .ownership import RELEASED

if TYPE_CHECKING:
    from bokeh.application import Application
    from bokeh.document import Document

__all__ = [
    "has_custom_template",
    "lifecycle_hook",
    "release_document",
    "use_thread_local_curdoc",
]


class _ThreadLocalStack(threading.local):
    """A list-like stack with one list per thread, for bokeh 3.9's global curdoc stack."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]

    def append(self, item: Any) -> None:
        self.items.append(item)

    def pop(self) -> Any:
        return self.items.pop()


def use_thread_local_curdoc() -> None:
    """Give each thread its own ``curdoc()`` stack on bokeh 3.9.

    bokeh 3.9 keeps patched curdocs in one process-wide list, so a thread calling
    ``doc.add_next_tick_callback`` (which patches curdoc briefly) could make the loop
    thread's callback see another session's document. bokeh 3.10 uses a ContextVar,
    which is already per thread and per task.
    """
    if isinstance(getattr(bokeh.io.doc, "_PATCHED_CURDOCS", None), list):
        setattr(bokeh.io.doc, "_PATCHED_CURDOCS", _ThreadLocalStack())  # noqa: B010


def _dead() -> None:
    return None


def release_document(document: Document, on_change: Any, session_id: str) -> None:
    """``Document.destroy`` without its per-document ``gc.collect()``.

    Bokeh collects the whole heap for every discarded session, which costs about as
    much as running a small app; the server collects once per reaper pass instead.
    Afterwards adding a callback to the document raises (Bokeh's "already-destroyed
    Document" error), so a thread that outlives its session stops instead of leaking.
    """
    document.remove_on_change(on_change)
    for model in document.models:  # so a reuse in a later session is reported, not silent
        setattr(model, RELEASED, session_id)
    document._roots = []
    document._session_context = None
    document.callbacks.destroy()
    document.callbacks._document = _dead  # type: ignore[assignment]
    document.models.destroy()
    _release_modules(document)


def _release_modules(document: Document) -> None:
    """``DocumentModuleManager.destroy`` without its ``gc.get_referrers`` heap scan per module.

    Bokeh scans the whole heap for each discarded session's module to warn about leaks; with
    hundreds of sessions that scan dominates (and stalls the loop). Leaks are what the memory
    tests watch for instead.
    """
    manager = document.modules
    for module in manager._modules:
        sys.modules.pop(module.__name__, None)
        module.__dict__.clear()
    manager._modules = []


def has_custom_template(application: Application) -> bool:
    """Whether the app's page comes from its own Jinja template (``templates/index.html``)."""
    from bokeh.application.handlers import DirectoryHandler

    return any(
        isinstance(h, DirectoryHandler) and getattr(h, "_template", None) is not None
        for h in application.handlers
    )


def lifecycle_hook(handler: Any, name: str) -> Any:
    """The hook an app defined in its ``server_lifecycle.py`` (or ``app_hooks.py``), or None.

    The server calls it directly, awaiting it if it is a coroutine: bokeh 3.9 returns an
    async hook's coroutine unawaited, and bokeh 3.10 runs hooks in a worker thread, where an
    async hook's coroutine is dropped.
    """
    from bokeh.application.handlers.lifecycle import LifecycleHandler

    target = getattr(handler, "_lifecycle_handler", handler)
    if not isinstance(target, LifecycleHandler):
        return None
    hook = getattr(target, f"_{name}", None)
    return None if hook is None or hook.__name__ == "_do_nothing" else hook
