"""The page shown when Bokeh cannot compile a custom model's TypeScript ``__implementation__``.

Bokeh compiles those models (with node) when a page's bundle is made; on a compiler error its
``bundle_models`` prints the message to standard error and calls ``sys.exit(1)``, which would
leave the browser a bare 500 and the log a ``SystemExit`` traceback. The views that make
bundles (the page, ``autoload.js``) turn that exit into a 500 page naming the model, its file
and the compiler's message.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import bokeh.util.compiler
from bokeh.model import Model
from bokeh.util.compiler import CustomModel, nodejs_compile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["CompileFailure", "compile_failures_as_pages", "failing_model", "from_compiler"]

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

View = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class CompileFailure:
    model: str  # the model class's name
    file: str  # where its implementation is (Bokeh's name: "<module file>:<Model>.ts" inline)
    message: str  # the compiler's, without terminal colours

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
            return CompileFailure(model.name, impl.file or model.file or "", message)
    return None


def compile_failures_as_pages(view: View) -> View:
    """``view``, whose compile failures are a 500 page naming the model (see the module)."""

    @functools.wraps(view)
    async def wrapper(request: Request, **kwargs: Any) -> Response:
        try:
            return await view(request, **kwargs)
        except SystemExit as exc:
            if not from_compiler(exc):
                raise
        failure = await asyncio.to_thread(failing_model)
        if failure is None:
            failure = CompileFailure("?", "?", "see the server's log (standard error)")
        log.error(
            "cannot compile the TypeScript of model %s (%s):\n%s",
            failure.model,
            failure.file,
            failure.message,
        )
        return HTMLResponse(failure.page(), status_code=500)

    return wrapper
