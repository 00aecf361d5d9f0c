"""BokehJS, extension and app static files, with long caching for versioned URLs."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from bokeh.embed import bundle as _bundle
from bokeh.util.paths import bokehjs_path
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["CachedStaticFiles", "ExtensionStaticFiles", "bokehjs_static"]

ONE_YEAR = 365 * 24 * 3600
MAX_EXTENSIONS = 256  # extension names whose directory (or absence) is kept


class CachedStaticFiles(StaticFiles):
    """Files whose URL carries ``?v=<hash>`` are immutable; others must revalidate."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned_url = b"v=" in scope.get("query_string", b"")
        cache_control = (
            f"public, max-age={ONE_YEAR}, immutable".encode() if versioned_url else b"no-cache"
        )

        async def send_with_cache(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", cache_control),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_cache)


def bokehjs_static() -> CachedStaticFiles:
    return CachedStaticFiles(directory=bokehjs_path())


class ExtensionStaticFiles(CachedStaticFiles):
    """``/static/extensions/<name>/<path>``: the compiled code of Bokeh extension packages.

    ``<name>`` is a top-level package that declares itself a Bokeh extension (a
    ``bokeh.ext.json`` beside its ``__init__.py``); its files are those under the directory of
    its compiled bundle (``package.json``'s ``module``/``main``, else ``dist/``), as Bokeh's
    ``bokeh.embed.bundle.extension_dirs`` names them. That mapping grows as pages name the
    extensions of the apps' models, so it is read per request; a name it lacks yet (a worker
    process that has made no page, a page cached across a restart) is found among the
    installed packages, without importing them. Each directory is confined as the other static
    routes are: no ``..``, no absolute path, no symlink out of it.
    """

    def __init__(self) -> None:
        super().__init__(directory=None, check_dir=False)
        self._installed: dict[str, StaticFiles | None] = {}  # name -> its files, or none
        self._served: dict[Path, StaticFiles] = {}

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        name, _, rest = path.partition(os.sep)
        files = self._files(name) if rest else None
        return files.lookup_path(rest) if files is not None else ("", None)

    def _files(self, name: str) -> StaticFiles | None:
        directory = _bundle.extension_dirs.get(name)
        if directory is not None:
            files = self._served.get(directory)
            if files is None:
                if len(self._served) >= MAX_EXTENSIONS:
                    self._served.clear()
                files = self._served[directory] = StaticFiles(directory=directory, check_dir=False)
            return files
        if name not in self._installed:
            if len(self._installed) >= MAX_EXTENSIONS:
                self._installed.clear()
            found = installed_extension_dir(name)
            self._installed[name] = StaticFiles(directory=found, check_dir=False) if found else None
        return self._installed[name]


def installed_extension_dir(name: str) -> Path | None:
    """Where Bokeh serves the files of the extension package ``name`` from (see
    ``bokeh.embed.bundle._bundle_extensions``), found without importing it; None if ``name``
    is no installed top-level package with a ``bokeh.ext.json``."""
    if not name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.submodule_search_locations:
        return None
    base_dir = Path(spec.origin).parent
    if not (base_dir / "bokeh.ext.json").is_file():
        return None
    try:
        pkg = json.loads((base_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pkg = None
    main = pkg.get("module", pkg.get("main")) if isinstance(pkg, dict) else None
    if isinstance(main, str):
        return (base_dir / os.path.normpath(main)).parent
    return base_dir / "dist"
