"""Custom models (a TypeScript ``__implementation__``) in the views that make page bundles:
the page shown when Bokeh cannot compile one, and what keeps their bundles working and off the
event loop (:class:`_CustomModels`).

Bokeh compiles those models (with node) when a page's bundle is made; on a compiler error its
``bundle_models`` prints the message to standard error and calls ``sys.exit(1)``, which would
leave the browser a bare 500 and the log a ``SystemExit`` traceback. The views that make
bundles (the page, ``autoload.js``) turn that exit into a 500 page naming the model, its file
and the compiler's message. The failure is remembered per model source (and bokeh version):
later pages answer the same page at once, without running node again, until the model's
TypeScript changes (a new session runs the app code with the new source).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import sys
import types
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import bokeh
import bokeh.util.compiler
from bokeh.core.has_props import HasProps
from bokeh.model import Model
from bokeh.util.compiler import CustomModel, nodejs_compile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = [
    "CompileFailure",
    "compile_custom_models",
    "compile_failures_as_pages",
    "failing_model",
    "from_compiler",
]

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

View = Callable[..., Awaitable[Response]]

# what a compile failure is remembered by: bokeh's version, the model's name, its file, its code
Source = tuple[str, str, str, str]

MAX_FAILURES = 16  # remembered per view: an app's model edited and broken again and again


def _source(model: CustomModel) -> Source:
    impl = model.implementation
    return (bokeh.__version__, model.name, impl.file or model.file or "", impl.code)


@dataclass(frozen=True)
class CompileFailure:
    model: str  # the model class's name
    file: str  # where its implementation is (Bokeh's name: "<module file>:<Model>.ts" inline)
    message: str  # the compiler's, without terminal colours
    source: Source | None = None  # what the compiler failed on

    def page(self) -> str:
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>500: cannot compile {html.escape(self.model)}</title></head><body>"
            f"<h1>Bokeh could not compile the TypeScript of model {html.escape(self.model)}</h1>"
            f"<p>in <code>{html.escape(self.file)}</code></p>"
            f"<pre>{html.escape(self.message)}</pre></body></html>"
        )


def from_compiler(exc: SystemExit) -> bool:
    """Whether this exit is ``bokeh.util.compiler.bundle_models`` giving up on a model."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "bundle_models" and code.co_filename == bokeh.util.compiler.__file__:
            return True
        tb = tb.tb_next
    return False


def failing_model() -> CompileFailure | None:
    """Compile each custom model again, in Bokeh's order, to find the first that fails (Bokeh's
    error names neither the model nor, for inline code, a file of its own)."""
    custom = [
        CustomModel(cls)
        for cls in Model.model_class_reverse_map.values()
        if getattr(cls, "__implementation__", None) is not None
    ]
    for model in sorted(custom, key=lambda model: model.full_name):
        impl = model.implementation
        compiled = nodejs_compile(impl.code, lang=impl.lang, file=impl.file)
        if "error" in compiled:
            error: Any = compiled["error"]
            text = error.get("text") or error.get("message") if isinstance(error, dict) else error
            message = _ANSI.sub("", str(text)).strip()
            file = impl.file or model.file or ""
            return CompileFailure(model.name, file, message, _source(model))
    return None


class _CustomModels:
    """What the page views do with custom models before Bokeh bundles them.

    - **Pinned to their files.** Bokeh finds an inline implementation's file name, and the
      directory its relative imports resolve from, through ``sys.modules[cls.__module__]``;
      an app's module leaves ``sys.modules`` when its session is discarded, while its model
      class stays registered, so every later bundle would fail with a ``KeyError`` (every page
      of the app a 500, until a session ran the app code again, which a page never does once
      the app code has run). Each class gets the implementation and base path Bokeh would
      compute (``__implementation__`` with its file, ``__base_path__``) while its module is
      there, else from the last class of that model whose module was there (else none: the
      working directory, as for a module without a file).
    - **Compiled off the event loop.** Each session's app code makes the class anew in a new
      module, and Bokeh's cache key has the module's name: each change compiles again (with
      node, for seconds). Compiled in a thread, the page's own bundle finds it in Bokeh's
      cache instead of blocking the loop. (An app's first page makes its classes inside the
      view, which calls :func:`compile_custom_models` once they exist.)
    - **Failures remembered.** Bokeh caches bundles, not failures: each page after a failed
      one would run node again (on the event loop, in the page's bundle) and again to find the
      model. A failure is kept by the failing model's source (:data:`Source`) and answered
      at once while a model of that source is registered.
    """

    def __init__(self) -> None:
        self.classes: tuple[type, ...] = ()
        self.pinned: weakref.WeakSet[type] = weakref.WeakSet()
        self.files: dict[str, str] = {}  # qualified model name -> its module's file
        self.sources: frozenset[Source] = frozenset()  # of the registered custom models
        self.failures: dict[Source, CompileFailure] = {}

    def pin(self) -> bool:
        """Pin the classes added since the last call; whether the model classes changed and
        there are custom models among them."""
        classes = tuple(Model.model_class_reverse_map.values())
        if classes == self.classes:
            return False
        self.classes = classes
        custom = [cls for cls in classes if getattr(cls, "__implementation__", None) is not None]
        for cls in custom:
            if cls not in self.pinned:
                self.pinned.add(cls)
                self._pin(cls)
        self.sources = frozenset(self._sources(custom))
        return bool(custom)

    @staticmethod
    def _sources(custom: list[type[HasProps]]) -> list[Source]:
        sources = []
        for cls in custom:
            try:
                sources.append(_source(CustomModel(cls)))
            except Exception:  # not pinned (its module gone): not remembered either
                continue
        return sources

    def known_failure(self) -> CompileFailure | None:
        """A failure remembered for the source of a registered model, if any."""
        for source in self.sources:
            if (failure := self.failures.get(source)) is not None:
                return failure
        return None

    async def find_failure(self) -> CompileFailure:
        """The model that fails (compiled again, in a thread), remembered by its source."""
        failure = await asyncio.to_thread(failing_model)
        if failure is None or failure.source is None:
            return CompileFailure("?", "?", "see the server's log (standard error)")
        if len(self.failures) >= MAX_FAILURES:
            del self.failures[next(iter(self.failures))]
        self.failures[failure.source] = failure
        return failure

    def _pin(self, cls: type[HasProps]) -> None:
        name = cls.__qualified_model__
        module = sys.modules.get(cls.__module__)
        stub = None
        if module is not None:
            file = getattr(module, "__file__", None)
            if file:
                self.files[name] = file
        else:  # the module is gone: the file of this model's last class, if any
            stub = sys.modules[cls.__module__] = types.ModuleType(cls.__module__)
            if name in self.files:
                stub.__file__ = self.files[name]
        try:
            model = CustomModel(cls)
            implementation, base_path = model.implementation, model.path
        except Exception:  # left to Bokeh, which will say why when it bundles
            return
        finally:
            if stub is not None:
                del sys.modules[cls.__module__]
        cls.__implementation__ = implementation
        if getattr(cls, "__base_path__", None) is None:
            cls.__base_path__ = base_path  # type: ignore[attr-defined]


async def compile_custom_models() -> None:
    """Compile the custom models, if any, in a thread (for an app's first page, whose classes
    appear as its view runs the app code); the page's bundle then finds Bokeh's cache."""
    classes = Model.model_class_reverse_map.values()
    if any(getattr(cls, "__implementation__", None) is not None for cls in classes):
        await asyncio.to_thread(bokeh.util.compiler.bundle_models, None)


def compile_failures_as_pages(view: View) -> View:
    """``view``, whose compile failures are a 500 page naming the model (see the module), and
    whose custom models are pinned to their files and compiled off the event loop when it can
    (see :class:`_CustomModels`); a failure is answered at once until the model's source
    changes."""
    custom_models = _CustomModels()

    @functools.wraps(view)
    async def wrapper(request: Request, **kwargs: Any) -> Response:
        changed = custom_models.pin()
        failure = custom_models.known_failure()
        if failure is not None:
            log.error(
                "cannot compile the TypeScript of model %s (%s), as before: fix it, and a new "
                "session brings the new source",
                failure.model,
                failure.file,
            )
            return HTMLResponse(failure.page(), status_code=500)
        try:
            if changed:
                await asyncio.to_thread(bokeh.util.compiler.bundle_models, None)
            response = await view(request, **kwargs)
            custom_models.pin()  # the classes the app's first page made, while their module is
            return response
        except SystemExit as exc:
            if not from_compiler(exc):
                raise
        custom_models.pin()  # as above: the first page's classes, to remember the failure by
        failure = custom_models.known_failure() or await custom_models.find_failure()
        log.error(
            "cannot compile the TypeScript of model %s (%s):\n%s",
            failure.model,
            failure.file,
            failure.message,
        )
        return HTMLResponse(failure.page(), status_code=500)

    return wrapper
