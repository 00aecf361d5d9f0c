"""What an application's handlers hold that Bokeh's handler API does not show."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bokeh.application.handlers import DirectoryHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler

if TYPE_CHECKING:
    from bokeh.application import Application

__all__ = ["has_custom_template", "lifecycle_hook"]

# where LifecycleHandler keeps the app's own function for each hook
_HOOK_ATTRIBUTES = {
    "on_server_loaded": "_on_server_loaded",
    "on_server_unloaded": "_on_server_unloaded",
    "on_session_created": "_on_session_created",
    "on_session_destroyed": "_on_session_destroyed",
}


def has_custom_template(application: Application) -> bool:
    """Whether the app's page comes from its own Jinja template (``templates/index.html``).

    Why not public: ``DirectoryHandler`` shows its template only by setting ``doc.template``
    in ``modify_document``, that is by running the app code; it keeps it in ``_template``.
    """
    return any(
        isinstance(h, DirectoryHandler) and getattr(h, "_template", None) is not None
        for h in application.handlers
    )


def lifecycle_hook(handler: Any, name: str) -> Any:
    """The hook an app defined in its ``server_lifecycle.py`` (or ``app_hooks.py``), or None.

    The server calls it directly, awaiting it if it is a coroutine: bokeh 3.9 returns an
    async hook's coroutine unawaited, and bokeh 3.10 runs hooks in a worker thread, where an
    async hook's coroutine is dropped.

    Why not public: the handlers' ``on_*`` methods are those wrappers; the app's own function
    is in ``LifecycleHandler._on_<name>`` (``_do_nothing`` when the app has none), reached
    from a directory app through ``DirectoryHandler._lifecycle_handler``.
    """
    target = getattr(handler, "_lifecycle_handler", handler)
    if not isinstance(target, LifecycleHandler):
        return None
    hook = getattr(target, _HOOK_ATTRIBUTES[name], None)
    return None if hook is None or hook.__name__ == "_do_nothing" else hook
