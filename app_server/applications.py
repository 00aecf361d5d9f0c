"""Turn what users hand us (paths, functions, Bokeh Applications) into Bokeh Applications."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from bokeh.application import Application
from bokeh.application.handlers import (
    DirectoryHandler,
    FunctionHandler,
    Handler,
    ScriptHandler,
)
from bokeh.application.handlers.server_request_handler import ServerRequestHandler
from bokeh.document import Document

from .exceptions import ConfigurationError

__all__ = ["AppTarget", "build_application", "route_for_path", "routes_for_paths"]

AppTarget: TypeAlias = str | os.PathLike[str] | Application | Callable[[Document], Any]


def _notebook_handler(path: str) -> Handler:
    from bokeh.application.handlers import NotebookHandler

    try:
        return NotebookHandler(filename=path)
    except (ImportError, RuntimeError) as exc:  # bokeh's "requires Jupyter Notebook"
        raise ConfigurationError(
            f"{path} is a notebook; install the notebook extra to serve it: "
            "pip install 'app_server[notebook]'"
        ) from exc


class _RequestHandlerFile(Handler):
    """``process_request`` from a directory app's ``request_handler.py``."""

    def __init__(self, filename: str, argv: list[str]) -> None:
        super().__init__()
        self._hooks = ServerRequestHandler(filename=filename, argv=argv)

    @property
    def failed(self) -> bool:
        return self._hooks.failed

    @property
    def error(self) -> str | None:
        return self._hooks.error

    @property
    def error_detail(self) -> str | None:
        return self._hooks.error_detail

    def modify_document(self, doc: Document) -> None:
        pass

    def process_request(self, request: Any) -> dict[str, Any]:
        return self._hooks.process_request(request)


def _directory_handlers(path: str, argv: list[str]) -> list[Handler]:
    """The directory app, plus ``request_handler.py`` when there is no ``app_hooks.py``.

    Bokeh reads ``process_request`` from ``app_hooks.py``; app_server also accepts it in
    a ``request_handler.py`` of its own.
    """
    handlers: list[Handler] = [DirectoryHandler(filename=path, argv=argv)]
    request_hooks = os.path.join(path, "request_handler.py")
    if os.path.exists(request_hooks) and not os.path.exists(os.path.join(path, "app_hooks.py")):
        handlers.append(_RequestHandlerFile(request_hooks, argv))
    return handlers


def _handlers_for_path(path: str, argv: list[str]) -> list[Handler]:
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "main.py")) and not any(
            name.endswith(".ipynb") for name in os.listdir(path)
        ):
            raise ConfigurationError(f"the directory app {path} needs a main.py")
        return _directory_handlers(path, argv)
    if os.path.isfile(path):
        if path.endswith(".ipynb"):
            return [_notebook_handler(path)]
        if path.endswith(".py"):
            return [ScriptHandler(filename=path, argv=argv)]
        raise ConfigurationError(f"expected a .py script, a .ipynb notebook or a directory: {path}")
    raise ConfigurationError(f"there is no Bokeh application at {path}")


def build_application(target: AppTarget, argv: list[str] | None = None) -> Application:
    """An Application for a path, a ``modify_doc(doc)`` function or an Application."""
    if isinstance(target, Application):
        return target
    if isinstance(target, str | os.PathLike):
        path = os.path.abspath(os.path.expanduser(os.fspath(target)))
        handlers = _handlers_for_path(path, argv or [])
        for handler in handlers:
            if handler.failed:
                raise ConfigurationError(
                    f"cannot load the Bokeh application {path}: "
                    f"{handler.error}\n{handler.error_detail}"
                )
        return Application(*handlers)
    if callable(target):
        return Application(FunctionHandler(target))
    raise ConfigurationError(
        f"cannot serve {target!r}: give a path to a .py file or a directory, "
        "a function modify_doc(doc), or a bokeh.application.Application"
    )


def route_for_path(path: str | os.PathLike[str]) -> str:
    """The URL path ``bokeh serve`` gives an app: its file or directory name."""
    return "/" + Path(path).resolve().stem


def routes_for_paths(paths: list[str]) -> dict[str, AppTarget]:
    routes: dict[str, AppTarget] = {}
    for path in paths:
        route = route_for_path(path)
        if route in routes:
            raise ConfigurationError(f"two applications would be served at {route}: rename one")
        routes[route] = path
    return routes


def normalize_routes(apps: Mapping[str, AppTarget] | AppTarget) -> dict[str, Application]:
    """``{"/route": target}`` from a mapping, or ``{"/": app}`` for a single target."""
    if not isinstance(apps, Mapping):
        apps = {"/": apps}
    routes: dict[str, Application] = {}
    for route, target in apps.items():
        route = "/" + route.strip("/")
        if route in routes:
            raise ConfigurationError(f"two applications are mapped to {route}")
        routes[route] = build_application(target)
    if not routes:
        raise ConfigurationError("give at least one application to serve")
    return routes
