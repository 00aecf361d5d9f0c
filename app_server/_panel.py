"""Panel apps: what ``panel serve`` does for a Panel app that ``bokeh serve app.py`` does not.

Panel is never imported here unless the app code already imported it, so it stays out of the
runtime dependencies. Three adapters, each the smallest that lets Panel's own code run unchanged:

- **Panel's files from this server.** Panel links its components' stylesheets (and the fonts
  they load) to its CDN unless the document names a ``dist_url`` template variable; ``panel
  serve`` sets it, and rewrites the stylesheets the app code made, when it renders the page;
  ``bokeh serve app.py`` does not, so behind a firewall Panel apps lose their styling.
  :func:`prepare_document` does what ``panel serve`` does, once the app code has run, with this
  server's ``/static/extensions/panel/``, absolute (below ``--prefix`` and a mount, and on the
  app's own origin under ``autoload.js``), unless Bokeh's resources are set to a CDN. The
  page's own links to Panel's files (its models' ``__css__``/``__javascript__``: the CDN, or
  paths relative to the page) go the same way, as ``panel serve`` makes them (:func:`local_files`).

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
from bokeh.embed.bundle import URL, Bundle

if TYPE_CHECKING:
    from .session import ServerSession

__all__ = ["connections", "dist_url", "local_files", "prepare_document"]

PANEL_DIST = "/static/extensions/panel/"  # where app_server serves Panel's dist/ (its extension)

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


def dist_url(path: str, app: str, absolute_url: str | None = None) -> str | None:
    """Panel's files on this server, from the request that opened a session: the page
    (``<root><app>``, with or without a trailing slash), its websocket (``<root><app>/ws``) or
    ``autoload.js``, whose ``absolute_url`` is the app's URL in another site's page. None if
    the path is none of these."""
    if absolute_url:
        root, found, rest = absolute_url.rpartition(app.rstrip("/"))
        if app != "/" and (not found or rest not in ("", "/")):
            return None
        return (absolute_url.rstrip("/") if app == "/" else root) + PANEL_DIST
    if app == "/":
        return path.removesuffix("/ws").rstrip("/") + PANEL_DIST
    root, found, rest = path.rpartition(app)
    return root + PANEL_DIST if found and rest in ("", "/", "/ws") else None


def local_files(bundle: Bundle, root_url: str) -> Bundle:
    """A page's scripts and stylesheets, Panel's among them from this server (``root_url``)."""
    if "panel" not in sys.modules:
        return bundle
    resources: Any = importlib.import_module("panel.io.resources")
    if resources.use_cdn():
        return bundle
    local = root_url.rstrip("/") + PANEL_DIST

    def here(url: URL) -> URL:
        for start in (resources.CDN_DIST, resources.LOCAL_DIST):
            if url.url.startswith(start):
                return URL(local + url.url.removeprefix(start))
        return url

    js_files, css_files = list(map(here, bundle.js_files)), list(map(here, bundle.css_files))
    return Bundle(js_files, bundle.js_raw, css_files, bundle.css_raw, bundle.hashes)


def _serve_panel_files(document: Document) -> None:
    """Panel's stylesheets from this server, as under ``panel serve`` (see the module)."""
    resources: Any = importlib.import_module("panel.io.resources")
    context = document.session_context
    request = getattr(context, "request", None)
    if request is None or resources.use_cdn():
        return
    app = context.server_context.application_context.url  # type: ignore[union-attr]
    absolute = request.arguments.get("bokeh-absolute-url")
    url = dist_url(request.path, app, absolute[0].decode() if absolute else None)
    if url is None:
        return
    document.template_variables["dist_url"] = url  # for the models made from now on
    for root in document.roots:  # and those the app code made
        resources.patch_model_css(root, dist_url=url)


def prepare_document(document: Document, application: Application) -> None:
    """After the app code ran: Panel's stylesheets from this server, and tell Panel when the
    page has loaded, as ``panel serve`` does."""
    global _registered
    if "panel" not in sys.modules:
        return  # not a Panel app
    _serve_panel_files(document)
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
