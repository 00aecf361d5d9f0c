"""Panel apps: what ``panel serve`` does for a Panel app that ``bokeh serve app.py`` does not.

Panel is never imported here unless the app code already imported it, so it stays out of the
runtime dependencies. Two adapters, each the smallest that lets Panel's own code run unchanged:

- **The page has loaded.** ``panel serve`` builds its apps with its own ``Application``, which
  subscribes every new document to the browser's ``document_ready`` event. ``bokeh serve app.py``
  builds a plain Bokeh ``Application``, under which Panel never learns that a page has loaded:
  ``pn.state.onload`` callbacks never run, and Panel keeps treating the session as unconnected, so
  (with Panel 1.9) a ``pn.state.add_periodic_callback`` started from a widget callback
  re-schedules its own start on every tick instead of starting. :func:`prepare_document`
  subscribes it, as Panel does.
- **Panel's direct writes.** Once a page has loaded, Panel's ``unlocked()`` (used when browser
  changes run Python watchers) takes the events a change made and writes them itself to
  ``session._subscribed_connections``, Bokeh's Tornado connections. An app_server session has
  one stand-in connection there (:func:`connections`), registered with Panel's hook for other
  servers' sockets (``panel.io.document.extra_socket_handlers``, how Panel's FastAPI server plugs
  in); writing to it gives the events back to the document, still on hold inside ``unlocked()``,
  so they leave through the session like any other change: serialized once, under its lock. A
  write Panel queues from a thread (``nthreads``) comes back as a next-tick callback, under the
  lock; ``session._pending_writes`` is not None only inside a locked callback, as in Bokeh.

The rest is Bokeh's own server API, which Panel reads and app_server's contexts now offer:
``application_context.url`` (``pn.state.app_url``), ``application_context.io_loop`` (Panel 1.10
tells its worker threads from the loop's thread by it) and the session contexts'
``block_expiration``/``unblock_expiration`` (``pn.state.block_expiration``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from bokeh.application import Application
from bokeh.document import Document

if TYPE_CHECKING:
    from .session import ServerSession

__all__ = ["connections", "prepare_document"]

_registered = False  # the stand-in socket is in Panel's extra_socket_handlers


class SessionSocket:
    """The socket Panel writes to: it hands the events back to the session's document."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session


class _Patch:
    """What ``protocol.create('PATCH-DOC', events)`` gives Panel here: the events, unserialized."""

    def __init__(self, events: Iterable[Any]) -> None:
        self.events = list(events)


class _Protocol:
    def create(self, msgtype: str, events: Iterable[Any], *args: Any, **kwargs: Any) -> _Patch:
        return _Patch(events)


class _Connection:
    """One of ``session._subscribed_connections`` as Panel uses them: a socket and a protocol."""

    def __init__(self, session: ServerSession) -> None:
        self._socket = SessionSocket(session)
        self.protocol = _Protocol()


def _write(
    connection: _Connection, events: Sequence[Any] | None = None, msg: _Patch | None = None
) -> list[Any]:
    """Panel's write to a socket: the events go back to the document; nothing to await.

    Inside ``unlocked()`` the document is on hold and takes them back until it sends them all;
    a write Panel queued for later (from a thread) runs as a next-tick callback, under the lock.
    """
    session = connection._socket.session
    found = events if events is not None else (msg.events if msg is not None else [])
    if session.document.callbacks.hold_value is not None or session.owns_lock():
        _trigger(session.document, found)
    else:
        session.document.add_next_tick_callback(partial(_trigger, session.document, found))
    return []


def _trigger(document: Document, events: Sequence[Any]) -> None:
    for event in events:
        document.callbacks.trigger_on_change(event)


def connections(session: ServerSession) -> list[Any]:
    """``session._subscribed_connections`` for Panel: one stand-in once Panel is set up."""
    return [_Connection(session)] if _registered else []


def prepare_document(document: Document, application: Application) -> None:
    """After the app code ran: tell Panel when the page has loaded, as ``panel serve`` does."""
    global _registered
    if "panel" not in sys.modules:
        return  # not a Panel app
    if not _registered:
        handlers: dict[type, Any] = importlib.import_module(
            "panel.io.document"
        ).extra_socket_handlers
        handlers.setdefault(SessionSocket, _write)
        _registered = True
    if type(application).__module__.startswith("panel."):
        return  # Panel's own Application subscribes the document itself
    state: Any = importlib.import_module("panel.io.state").state
    document.on_event("document_ready", partial(state._schedule_on_load, document))
