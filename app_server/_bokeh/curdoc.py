"""``curdoc()`` per thread on bokeh 3.9, as bokeh 3.10 has it already."""

from __future__ import annotations

import threading
from typing import Any

import bokeh.io.doc

__all__ = ["use_thread_local_curdoc"]

_lock = threading.Lock()


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
    """Give each thread its own ``curdoc()`` stack on bokeh 3.9; a no-op when done already.

    bokeh 3.9 keeps patched curdocs in one process-wide list, so a thread calling
    ``doc.add_next_tick_callback`` (which patches curdoc briefly) could make the loop
    thread's callback see another session's document. bokeh 3.10 uses a ContextVar,
    which is already per thread and per task: nothing to do.

    Why not public: bokeh 3.9 has no setting for it; ``patch_curdoc`` and ``curdoc`` read the
    module global ``bokeh.io.doc._PATCHED_CURDOCS``, so the global is what must change.
    """
    with _lock:
        current = getattr(bokeh.io.doc, "_PATCHED_CURDOCS", None)
        if isinstance(current, list):  # bokeh 3.9, not yet replaced
            stack = _ThreadLocalStack()
            stack.items.extend(current)  # pushed by this thread, which will pop them
            setattr(bokeh.io.doc, "_PATCHED_CURDOCS", stack)  # noqa: B010
