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
from bokeh.document import Document

from .exceptions import ConfigurationError

__all__ = ["AppTarget", "build_application", "route_for_path", "routes_for_paths"]

AppTarget: TypeAlias = str | os.PathLike[str] | Application | Callable[[Document], Any]


def _notebook_handler(path: str) -> Handler:
    try:
        from bokeh.application.handlers import NotebookHandler

        return NotebookHandler(filename=path)
    except ImportError as exc:  # nbformat/nbconvert missing
        raise ConfigurationError(
            f"{path} is a notebook; install the notebook extra to serve it: "
            "pip install 'app_server[notebook]'"
        ) from exc


def _handler_for_path(path: str, argv: list[str]) -> Handler:
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "main.py")) and not any(
            name.endswith(".ipynb") for name in os.listdir(path)
        ):
            raise ConfigurationError(f"the directory app {path} needs a main.py")
        return DirectoryHandler(filename=path, argv=argv)
    if os.path.isfile(path):
        if path.endswith(".ipynb"):
            return _notebook_handler(path)
        if path.endswith(".py"):
            return ScriptHandler(filename=path, argv=argv)
        raise ConfigurationError(f"expected a .py script, a .ipynb notebook or a directory: {path}")
    raise ConfigurationError(f"there is no Bokeh application at {path}")


def build_application(target: AppTarget, argv: list[str] | None = None) -> Application:
    """An Application for a path, a ``modify_doc(doc)`` function or an Application."""
    if isinstance(target, Application):
        return target
    if isinstance(target, str | os.PathLike):
        path = os.path.abspath(os.path.expanduser(os.fspath(target)))
        handler = _handler_for_path(path, argv or [])
        if handler.failed:
            raise ConfigurationError(
                f"cannot load the Bokeh application {path}: {handler.error}\n{handler.error_detail}"
            )
        return Application(handler)
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
