"""What pages load from this server (BokehJS, extension scripts), and the caches that make
pages cheap: owned by one running server, so two apps in a process share nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bokeh.embed.bundle import Bundle, bundle_for_objs_and_resources
from bokeh.model import Model
from bokeh.resources import Resources

from ._panel import local_files

__all__ = ["PageBundles", "StaticVersions"]

MAX_ROOTS = 16  # root URLs a server keeps bundles for (one per mount or proxy path)
MAX_FILES = 256  # static files whose content hash is kept


class StaticVersions:
    """``js/bokeh.min.js`` gives ``js/bokeh.min.js?v=<content hash>`` (Resources' versioner),
    so those URLs can be cached for a year; each file is hashed once."""

    def __init__(self, directory: str | Path) -> None:
        self._directory = Path(directory)
        self._hashes: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        digest = self._hashes.get(path)
        if digest is None:
            try:
                digest = hashlib.sha256((self._directory / path).read_bytes()).hexdigest()[:16]
            except OSError:
                digest = ""
            if len(self._hashes) >= MAX_FILES:
                self._hashes.clear()
            self._hashes[path] = digest
        return f"{path}?v={digest}" if digest else path


class PageBundles:
    """Bokeh's scripts and styles for a page, made again only when a model class is added.

    Making one scans every model class for extensions and styles: half a page's time.
    Panel's files in it are this server's (:func:`app_server._panel.local_files`).
    """

    def __init__(self) -> None:
        # root URL -> (the model classes it was made with, the bundle)
        self._bundles: dict[str, tuple[tuple[type, ...], Bundle]] = {}

    def get(self, resources: Resources) -> Bundle:
        root = resources.root_url
        classes = tuple(Model.model_class_reverse_map.values())
        cached = self._bundles.get(root)
        if cached is None or cached[0] != classes:
            if len(self._bundles) >= MAX_ROOTS:
                self._bundles.clear()
            bundle = local_files(bundle_for_objs_and_resources(None, resources), root)
            cached = self._bundles[root] = (classes, bundle)
        return cached[1]
