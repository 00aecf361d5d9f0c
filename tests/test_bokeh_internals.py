"""The contract between app_server and Bokeh's private API, on every Bokeh version we run.

app_server reaches into Bokeh from one package, ``app_server/_bokeh/``. The first half of this
file checks that every internal those adapters use is still there with the shape they expect;
a failure names the internal, the Bokeh version and the adapter to update. The second half
checks that no other module of app_server reaches a private Bokeh name, and that the adapters
reach nothing the first half does not check.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bokeh
import bokeh.io.doc
import numpy as np
import pytest
from bokeh.application import Application
from bokeh.application.handlers import DirectoryHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.core import serialization as bokeh_serialization
from bokeh.core.has_props import HasProps
from bokeh.core.properties import Int, List, Override, String
from bokeh.document import Document
from bokeh.document.events import (
    DocumentPatchedEvent,
    SessionCallbackAdded,
    SessionCallbackRemoved,
)
from bokeh.io.doc import curdoc, patch_curdoc
from bokeh.model import Model
from bokeh.models.widgets.markups import Div
from bokeh.models.widgets.sliders import Slider
from bokeh.plotting import figure

import app_server
from app_server._bokeh import curdoc as curdoc_adapter
from app_server._bokeh.callbacks import app_function, time_handlers, untime_handlers
from app_server._bokeh.documents import (
    attach_session_context,
    destroy_document,
    new_models,
    release_modules,
)
from app_server._bokeh.handlers import has_custom_template, lifecycle_hook
from app_server._bokeh.properties import changed_attributes, serialization_plan
from app_server._bokeh.serialization import Serializer

PACKAGE = Path(app_server.__file__).parent
ADAPTERS = PACKAGE / "_bokeh"
VERSION = bokeh.__version__


# -- the contract: every internal the adapters use -------------------------------------------


@dataclass(frozen=True)
class Internal:
    """One Bokeh internal, the adapter that uses it, and how to tell it still fits."""

    name: str  # as a reader finds it in Bokeh's source
    adapter: str  # the module of app_server (and function) that relies on it
    names: tuple[str, ...]  # the private names it covers: see test_every_reach_of_the_adapters
    check: Callable[[Path], None]

    def __str__(self) -> str:
        return self.name


INTERNALS: list[Internal] = []


def internal(name: str, adapter: str, *names: str) -> Callable[[Callable[[Path], None]], Any]:
    def register(check: Callable[[Path], None]) -> Callable[[Path], None]:
        last = name.rsplit(".", 1)[-1]
        INTERNALS.append(Internal(name, adapter, names or (last,) * last.startswith("_"), check))
        return check

    return register


def expect(condition: object, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _statements(function: Any) -> set[str]:
    """Each simple statement of a function's source, nested ones included, as source text."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0]
    assert isinstance(body, ast.FunctionDef | ast.AsyncFunctionDef)
    found: set[str] = set()
    for node in ast.walk(body):
        if isinstance(node, ast.stmt) and not isinstance(
            node, ast.FunctionDef | ast.For | ast.If | ast.With | ast.Try
        ):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            found.add(ast.unparse(node))
    return found


class _Context:
    """Stands for a session context (Document holds it weakly)."""


# documents.py


@internal(
    "Document._session_context", "_bokeh/documents.py (attach_session_context, destroy_document)"
)
def _session_context(tmp_path: Path) -> None:
    document = Document()
    expect(document._session_context is None, "is not None on a new Document")
    context = _Context()
    attach_session_context(document, context)  # type: ignore[arg-type]
    expect(
        document.session_context is context,  # type: ignore[comparison-overlap]
        "set to a weakref is not what Document.session_context returns",
    )


@internal("Document._roots", "_bokeh/documents.py (destroy_document)")
def _roots(tmp_path: Path) -> None:
    document = Document()
    div = Div()
    document.add_root(div)
    expect(document._roots == [div], "is not the list of roots add_root appends to")
    destroy_document(document)
    expect(document.roots == [], "set to [] does not empty Document.roots")


@internal(
    "Document.destroy", "_bokeh/documents.py (destroy_document, which does the same minus gc)"
)
def _destroy(tmp_path: Path) -> None:
    expected = {
        "self.remove_on_change(session)",  # done by the caller (ownership.release_document)
        "del self._roots",
        "del self._theme",  # left: a theme holds no session state
        "del self._template",
        "self._session_context = None",
        "self.callbacks.destroy()",
        "self.models.destroy()",
        "self.modules.destroy()",
        "gc.collect()",  # what destroy_document leaves out
    }
    actual = _statements(Document.destroy)
    expect(
        actual == expected,
        f"now also does {sorted(actual - expected)}, or no longer {sorted(expected - actual)}",
    )


@internal("DocumentCallbackManager._document", "_bokeh/documents.py (destroy_document)")
def _callbacks_document(tmp_path: Path) -> None:
    document = Document()
    reference = document.callbacks._document
    expect(reference() is document, "is not a weakref to the document")
    destroy_document(document)
    try:
        document.add_next_tick_callback(lambda: None)
    except RuntimeError:
        return
    raise AssertionError("replaced by a dead reference no longer stops new callbacks")


@internal("DocumentModuleManager._modules", "_bokeh/documents.py (release_modules)")
def _modules(tmp_path: Path) -> None:
    document = Document()
    module = types.ModuleType("bk_contract_module")
    document.modules.add(module)
    expect(document.modules._modules == [module], "is not the list modules.add appends to")
    expected = {
        "del sys.modules[module.__name__]",
        "module.__dict__.clear()",
        "del module",
        "self._modules = []",
    }
    # what destroy() does besides its gc.get_referrers leak check and its logging
    actual = {
        s
        for s in _statements(type(document.modules).destroy)
        if "referrers" not in s and not s.startswith(("log.", "from ", "import "))
    }
    expect(actual == expected, f"DocumentModuleManager.destroy now does {sorted(actual)}")
    destroy_document(document)
    expect(
        "bk_contract_module" in sys.modules,
        "destroy_document released it (the destroy hooks read it)",
    )
    release_modules(document)
    expect("bk_contract_module" not in sys.modules, "is no longer what sys.modules holds")


@internal("DocumentModelManager._new_models", "_bokeh/documents.py (new_models)")
def _new_models(tmp_path: Path) -> None:
    document = Document()
    div = Div()
    document.add_root(div)
    live = new_models(document)
    expect(isinstance(live, set) and div in live, "does not hold a model just added")
    expect(div not in document.models.synced_references, "is not what synced_references excludes")
    document.models.flush_synced(lambda model: model is not div)
    expect(div not in new_models(document), "is not what flush_synced empties")


# properties.py


class ContractParent(Model):
    label = String(default="parent")
    items = List(Int)  # a container: its default is unstable


class ContractChild(ContractParent):
    label = Override(default="child")  # type: ignore[assignment]


class ContractGrandchild(ContractChild):
    pass


@internal("HasProps._overridden_defaults", "_bokeh/properties.py (serialization_plan)")
def _overridden_defaults(tmp_path: Path) -> None:
    overridden = ContractGrandchild._overridden_defaults()
    expect(isinstance(overridden, dict), "does not return a dict")
    expect(overridden.get("label") == "child", "does not merge the overrides of the base classes")


@internal(
    "HasProps.properties(_with_props=True)",
    "_bokeh/properties.py (serialization_plan)",
    "_with_props",
)
def _with_props(tmp_path: Path) -> None:
    expect("_with_props" in inspect.signature(HasProps.properties).parameters, "is not a keyword")
    properties = Slider.properties(_with_props=True)
    expect(isinstance(properties, dict), "does not return a dict")
    expect(set(properties) == Slider.properties(), "does not list the class's properties")
    slider = Slider(start=0, end=1, value=0)
    serialized = [name for name in properties if Slider.lookup(name).serialized]
    expect(
        serialized == list(slider.properties_with_values(include_defaults=True)),
        "is not in the order Bokeh serializes properties",
    )


@internal("Property._may_have_unstable_default", "_bokeh/properties.py (serialization_plan)")
def _may_have_unstable_default(tmp_path: Path) -> None:
    items = ContractParent.lookup("items").property._may_have_unstable_default()
    label = ContractParent.lookup("label").property._may_have_unstable_default()
    expect(items is True and label is False, f"says {items} for a List, {label} for a String")
    descriptor = ContractParent.lookup("label")
    expect(callable(descriptor.is_unstable) and callable(descriptor.class_default), "moved")


@internal("HasProps._property_values", "_bokeh/properties.py (changed_attributes)")
def _property_values(tmp_path: Path) -> None:
    model = ContractParent()
    expect(model._property_values == {}, "is not empty on a new model")
    model.label = "set"  # type: ignore[assignment]
    expect(model._property_values == {"label": "set"}, "does not hold the values set")


@internal("HasProps._unstable_default_values", "_bokeh/properties.py (changed_attributes)")
def _unstable_default_values(tmp_path: Path) -> None:
    model = ContractParent()
    stored = model._unstable_default_values
    expect(isinstance(stored, dict) and "items" in stored, "does not hold made defaults")


@internal(
    "HasProps.query_properties_with_values",
    "_bokeh/properties.py (changed_attributes, serialization_plan: its choice, made per class)",
)
def _query_properties_with_values(tmp_path: Path) -> None:
    document = Document()
    plot = figure(title="contract")
    plot.line([1, 2, 3], [3, 1, 2])
    mutated = ContractChild()
    mutated.items.append(1)  # type: ignore[attr-defined]
    for root in (plot, Div(text="x"), Slider(start=0, end=1, value=0), mutated, ContractChild()):
        document.add_root(root)
    for model in document.models:
        plan = serialization_plan(type(model))
        if plan is None:
            continue
        ours = changed_attributes(model, plan)
        bokehs = model.properties_with_values(include_defaults=False)
        expect(ours == bokehs, f"chooses otherwise for {type(model).__name__}: {bokehs}")


# serialization.py


@internal("Serializer._encode", "_bokeh/serialization.py (Serializer._encode, encode_model)")
def _encode(tmp_path: Path) -> None:
    parameters = list(inspect.signature(bokeh_serialization.Serializer._encode).parameters)
    expect(parameters == ["self", "obj"], f"takes {parameters}")
    seen: list[Model] = []

    class Recording(Serializer):
        def encode_model(self, model: Model) -> Any:
            seen.append(model)
            return super().encode_model(model)

    div = Div(text="x")
    ours = Recording().encode([div])
    expect(seen == [div], "is no longer what encode() calls for each object")
    expect(ours == bokeh_serialization.Serializer().encode([div]), "encodes differently")


@internal("Serializer._references", "_bokeh/serialization.py (references_by_id)")
def _references(tmp_path: Path) -> None:
    serializer = Serializer()
    table = serializer.references_by_id
    expect(isinstance(table, dict), "is not a dict")
    div = Div()
    serializer.add_ref(div, div.ref)
    expect(table.get(id(div)) == div.ref, "is not what add_ref writes, by id()")
    other = Div()
    table[id(other)] = other.ref
    expect(serializer.get_ref(other) == other.ref, "is not what get_ref reads")
    expect(serializer.encode(other) == other.ref, "is not what encode() reads")


@internal("Serializer._buffers", "_bokeh/serialization.py (buffer_count, buffers_from)")
def _buffers(tmp_path: Path) -> None:
    serializer = Serializer()
    expect(serializer.buffer_count() == 0, "is not an empty list at first")
    serializer.encode(np.arange(3))
    serializer.encode(np.arange(4.0))
    expect(serializer.buffer_count() == 2, "does not grow by one per array encoded")
    expect(serializer.buffers_from(1) == serializer.buffers[1:], "is not the public buffers")


@internal("Serializer._encoders", "_bokeh/serialization.py (Serializer._plain_list)")
def _encoders(tmp_path: Path) -> None:
    table = bokeh_serialization.Serializer._encoders
    expect(isinstance(table, dict), "is not a dict")

    class Marked:
        pass

    bokeh_serialization.Serializer.register(Marked, lambda obj, serializer: "marked")
    try:
        expect(Marked in table, "is not where Serializer.register keeps an encoder, by type")
        expect(
            bokeh_serialization.Serializer().encode([Marked()]) == ["marked"],
            "is not what encode() uses for an object of that exact type",
        )
    finally:
        del table[Marked]


@internal("Serializer._encode_bytes", "_bokeh/serialization.py (Serializer._binary_array)")
def _encode_bytes(tmp_path: Path) -> None:
    parameters = list(inspect.signature(bokeh_serialization.Serializer._encode_bytes).parameters)
    expect(parameters == ["self", "obj"], f"takes {parameters}")
    array = np.arange(4.0)
    for deferred in (True, False):
        bokehs = bokeh_serialization.Serializer(deferred=deferred).encode(array)
        expect(bokehs["type"] == "ndarray", f"an array no longer encodes as an ndarray: {bokehs}")
        serializer = bokeh_serialization.Serializer(deferred=deferred)
        rep = serializer._encode_bytes(array.data)
        expect(rep["type"] == "bytes", f"no longer makes a bytes rep: {rep}")
        if deferred:
            expect(rep["data"] in serializer.buffers, "no longer adds the buffer it refers to")
            expect(rep["data"].to_bytes() == array.tobytes(), "no longer holds the array's bytes")
        else:
            expect(rep["data"] == bokehs["array"]["data"], "no longer what an ndarray's array is")
    # what _binary_array builds beside it, for an array Bokeh sends as a buffer
    serializer = bokeh_serialization.Serializer()
    rep = serializer.encode(array)
    expected = {"type", "array", "shape", "dtype", "order"}
    expect(set(rep) == expected, f"an ndarray's rep now has the fields {sorted(rep)}")
    expect(
        rep["shape"] == [4] and rep["dtype"] == "float64", f"describes an array otherwise: {rep}"
    )
    expect(rep["order"] == sys.byteorder, f"gives its byte order otherwise: {rep}")


# handlers.py


def _directory_app(tmp_path: Path, hooks: str | None = None, template: bool = False) -> Path:
    tmp_path.mkdir()
    (tmp_path / "main.py").write_text("")
    if hooks is not None:
        (tmp_path / "app_hooks.py").write_text(hooks)
    if template:
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / "index.html").write_text("{{ plot_script }}")
    return tmp_path


@internal("DirectoryHandler._template", "_bokeh/handlers.py (has_custom_template)")
def _template(tmp_path: Path) -> None:
    plain = DirectoryHandler(filename=str(_directory_app(tmp_path / "plain")))
    own = DirectoryHandler(filename=str(_directory_app(tmp_path / "own", template=True)))
    expect(getattr(plain, "_template", 0) is None, "is not None for an app without a template")
    expect(getattr(own, "_template", None) is not None, "does not hold the app's template")
    expect(not has_custom_template(Application(plain)), "is set without a template")
    expect(has_custom_template(Application(own)), "is not found")


HOOKS = ("on_server_loaded", "on_server_unloaded", "on_session_created", "on_session_destroyed")


@internal(
    "DirectoryHandler._lifecycle_handler, LifecycleHandler._on_*, lifecycle._do_nothing",
    "_bokeh/handlers.py (lifecycle_hook)",
    "_lifecycle_handler",
    "_do_nothing",
    *(f"_{hook}" for hook in HOOKS),
)
def _lifecycle(tmp_path: Path) -> None:
    empty = LifecycleHandler()
    for hook in HOOKS:
        default = getattr(empty, f"_{hook}", None)
        expect(callable(default), f"LifecycleHandler._{hook} is missing")
        expect(
            getattr(default, "__name__", None) == "_do_nothing",
            f"LifecycleHandler._{hook} is not named _do_nothing when the app defines none",
        )
    source = "\n".join(f"def {hook}(context):\n    return {hook!r}\n" for hook in HOOKS)
    app = DirectoryHandler(filename=str(_directory_app(tmp_path / "hooked", hooks=source)))
    expect(isinstance(getattr(app, "_lifecycle_handler", None), LifecycleHandler), "moved")
    for hook in HOOKS:
        found = lifecycle_hook(app, hook)
        expect(found is not None and found(None) == hook, f"the app's {hook} is not found")
    bare = DirectoryHandler(filename=str(_directory_app(tmp_path / "bare")))
    expect(all(lifecycle_hook(bare, hook) is None for hook in HOOKS), "found without hooks")


# curdoc.py


@internal("bokeh.io.doc._PATCHED_CURDOCS", "_bokeh/curdoc.py (use_thread_local_curdoc)")
def _patched_curdocs(tmp_path: Path) -> None:
    stack = getattr(bokeh.io.doc, "_PATCHED_CURDOCS", None)
    per_thread = isinstance(stack, ContextVar)
    expect(
        per_thread or isinstance(stack, list | curdoc_adapter._ThreadLocalStack),
        f"is a {type(stack).__name__}, neither bokeh 3.9's list nor bokeh 3.10's ContextVar",
    )
    for function in (curdoc, patch_curdoc):
        expect(
            "_PATCHED_CURDOCS" in inspect.getsource(function),
            f"is no longer what {function.__name__}() reads",
        )
    curdoc_adapter.use_thread_local_curdoc()
    after = getattr(bokeh.io.doc, "_PATCHED_CURDOCS", None)
    curdoc_adapter.use_thread_local_curdoc()
    expect(getattr(bokeh.io.doc, "_PATCHED_CURDOCS", None) is after, "patched twice")
    expect(
        isinstance(after, ContextVar | curdoc_adapter._ThreadLocalStack),
        "is still shared by every thread",
    )
    _expect_curdoc_per_thread()


def _expect_curdoc_per_thread() -> None:
    mine, theirs = Document(), Document()
    inside, leave = threading.Event(), threading.Event()

    def other_thread() -> None:
        with patch_curdoc(theirs):
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other_thread)
    with patch_curdoc(mine):
        thread.start()
        inside.wait(5)
        seen = curdoc()
        leave.set()
        thread.join(5)
    expect(seen is mine, "patched in one thread, changes curdoc() in another")


# callbacks.py


@internal(
    "PropertyCallbackManager._callbacks, EventCallbackManager._event_callbacks, and "
    "DocumentCallbackManager's trigger_on_change, notify_event, trigger_event called through "
    "the instance",
    "_bokeh/callbacks.py (time_handlers)",
    "_callbacks",
    "_event_callbacks",
)
def _timed_handlers(tmp_path: Path) -> None:
    from bokeh.events import ButtonClick, DocumentReady
    from bokeh.models import Button

    def moved(attr: str, old: Any, new: Any) -> None: ...

    def clicked() -> None: ...

    def seen_by_document(event: Any) -> None: ...

    document, slider, button = Document(), Slider(start=0, end=10, value=0), Button()
    slider.on_change("value", moved)
    button.on_click(clicked)
    document.add_root(slider)
    document.add_root(button)
    document.on_event(DocumentReady, seen_by_document)
    ran: list[tuple[str, list[Any]]] = []

    def timed(call: Callable[[], Any], what: str, handlers: Any) -> Any:
        ran.append((what, list(handlers)))
        return call()

    time_handlers(document, timed)
    slider.value = 3
    document.callbacks.trigger_event(ButtonClick(button))
    document.callbacks.trigger_event(DocumentReady())
    expected = [
        ("on_change handler of Slider.value", [moved]),
        ("on_event handler of Button button_click", [clicked]),
        ("document on_event handler of document_ready", [seen_by_document]),
    ]
    expect(ran == expected, f"the handlers run are no longer seen this way: {ran}")
    untime_handlers(document)
    slider.value = 4
    expect(len(ran) == 3, "untime_handlers left a wrapper behind")


@internal(
    "DocumentCallbackManager.trigger_on_change, run under the session's curdoc",
    "_bokeh/callbacks.py (_TimedHandlers._run_here)",
)
def _trigger_on_change(tmp_path: Path) -> None:
    from bokeh.document.callbacks import DocumentCallbackManager

    expected = {
        "doc = self._document()",
        "return",
        "self._held_events.append(event)",
        "_combine_document_events(event, self._held_events)",
        "invoke_with_curdoc(doc, event.callback_invoker)",
        "invoke_with_curdoc(doc, invoke_callbacks)",
        "cb(event)",
    }
    actual = _statements(DocumentCallbackManager.trigger_on_change)
    expect(
        actual == expected,
        f"now also does {sorted(actual - expected)}, or no longer {sorted(expected - actual)}",
    )
    # and app_server's copy runs the same things in the same order, curdoc unchanged, without
    # Bokeh's invoke_with_curdoc (counted where trigger_on_change looks it up)
    import bokeh.document.callbacks as bokeh_callbacks

    document, slider = Document(), Slider(start=0, end=10, value=0)
    document.add_root(slider)
    seen: list[Any] = []
    slider.on_change("value", lambda attr, old, new: seen.append(("handler", new, curdoc())))
    document.on_change(lambda event: seen.append(("document", event.new, curdoc())))
    patched: list[Any] = []
    original = bokeh_callbacks.invoke_with_curdoc

    def counting(doc: Any, f: Any) -> Any:
        patched.append(doc)
        return original(doc, f)

    bokeh_callbacks.invoke_with_curdoc = counting
    try:
        time_handlers(document, lambda call, what, handlers: call())
        with patch_curdoc(document):
            slider.value = 5
        expect(patched == [], "app_server's copy still goes through invoke_with_curdoc")
        untime_handlers(document)
        with patch_curdoc(document):
            slider.value = 6
        expect(patched == [document] * 2, f"Bokeh's sets curdoc otherwise: {patched}")
    finally:
        bokeh_callbacks.invoke_with_curdoc = original
    expect(
        seen
        == [
            ("handler", 5, document),
            ("document", 5, document),
            ("handler", 6, document),
            ("document", 6, document),
        ],
        f"runs otherwise: {seen}",
    )


@internal(
    "bokeh.document.callbacks._wrap_with_curdoc, around a session callback's function",
    "_bokeh/callbacks.py (app_function)",
    "_wrap_with_curdoc",
)
def _wrap_with_curdoc(tmp_path: Path) -> None:
    calls: list[Any] = []

    def tick() -> None:
        calls.append(curdoc())

    document, other = Document(), Document()
    stored = document.add_periodic_callback(tick, 1000).callback
    expect(stored is not tick, "a periodic callback's function is no longer wrapped")
    expect(app_function(stored, document) is tick, "no longer wraps it this way")
    expect(app_function(stored, other) is stored, "the document is no longer in its closure")
    expect(app_function(tick, document) is tick, "takes a plain function for the wrapper")
    stored()
    expect(calls == [document], "no longer only sets curdoc to the document around the call")
    # a one-shot callback's function removes the callback, then calls the app's
    for one_shot in (
        document.add_next_tick_callback(tick),
        document.add_timeout_callback(tick, 1000),
    ):
        inner = app_function(one_shot.callback, document)
        expect(inner is not one_shot.callback, f"{type(one_shot).__name__} wraps otherwise")
        expect(inspect.unwrap(inner) is tick, f"{type(one_shot).__name__} wraps otherwise")
        inner()
        expect(one_shot not in document.session_callbacks, "a one-shot is not removed first")


# the receivers app_server registers with on_change_dispatch_to (testing.py, client/session.py)


@internal(
    "DocumentChangedEvent.dispatch -> receiver._document_patched, _session_callback_*",
    "testing.py and client/session.py (the receivers they register)",
    "_document_patched",
    "_session_callback_added",
    "_session_callback_removed",
)
def _dispatch(tmp_path: Path) -> None:
    received: list[str] = []

    class Receiver:
        def _document_patched(self, event: DocumentPatchedEvent) -> None:
            received.append(f"patched {type(event).__name__}")

        def _session_callback_added(self, event: SessionCallbackAdded) -> None:
            received.append("added")

        def _session_callback_removed(self, event: SessionCallbackRemoved) -> None:
            received.append("removed")

    document = Document()
    div = Div(text="a")
    document.add_root(div)
    document.callbacks.on_change_dispatch_to(Receiver())
    div.text = "b"
    callback = document.add_periodic_callback(lambda: None, 1000)
    document.remove_periodic_callback(callback)
    expect(
        received == ["patched ModelChangedEvent", "added", "removed"],
        f"no longer reaches a receiver of on_change_dispatch_to this way: {received}",
    )


@pytest.mark.parametrize("contract", INTERNALS, ids=str)
def test_bokeh_still_has_what_the_adapter_expects(contract: Internal, tmp_path: Path) -> None:
    try:
        contract.check(tmp_path)
    except Exception as exc:
        pytest.fail(
            f"bokeh {VERSION}: {contract.name}: {type(exc).__name__}: {exc}. "
            f"Update app_server/{contract.adapter}.",
            pytrace=False,
        )


def test_use_thread_local_curdoc_changes_nothing_at_import_and_is_called_by_appserver() -> None:
    """Importing app_server patches nothing in Bokeh; creating an AppServer does (on 3.9)."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil
        import bokeh.io.doc
        import app_server
        before = bokeh.io.doc._PATCHED_CURDOCS
        for info in pkgutil.walk_packages(app_server.__path__, "app_server."):
            importlib.import_module(info.name)
        assert bokeh.io.doc._PATCHED_CURDOCS is before, "an import patched curdoc"
        from app_server import create_app
        create_app({"/": lambda doc: None})
        after = bokeh.io.doc._PATCHED_CURDOCS
        print(type(before).__name__, type(after).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split()
    if before == "list":  # bokeh 3.9
        assert after == "_ThreadLocalStack", "AppServer did not make curdoc() per thread"
    else:
        assert before == after == "ContextVar"


# -- the guard: nothing outside app_server/_bokeh/ reaches a private Bokeh name --------------

# Where the classes and module globals app_server could reach live, besides the modules it
# imports from Bokeh (found in its source).
BOKEH_PACKAGES = (
    "bokeh.application",
    "bokeh.core.has_props",
    "bokeh.core.property",
    "bokeh.core.serialization",
    "bokeh.document",
    "bokeh.embed",
    "bokeh.io.doc",
    "bokeh.model",
    "bokeh.server.callbacks",
)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _app_server_modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _bokeh_modules_imported_by_app_server() -> set[str]:
    found: set[str] = set()
    for path, _ in _app_server_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if name == "bokeh" or name.startswith("bokeh.")}


def _bokeh_modules() -> Iterator[types.ModuleType]:
    for name in sorted(_bokeh_modules_imported_by_app_server()):
        yield importlib.import_module(name)
    for name in BOKEH_PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
            try:
                yield importlib.import_module(info.name)
            except ImportError:  # an optional dependency (notebooks...)
                continue


def _is_bokeh_class(cls: type) -> bool:
    return cls.__module__ == "bokeh" or cls.__module__.startswith("bokeh.")


@functools.cache
def _class_privates(cls: type) -> frozenset[str]:
    """The private names of a Bokeh class: attributes, annotations and what its code sets."""
    names = {name for name in dir(cls) if _is_private(name)}
    names.update(name for name in inspect.get_annotations(cls) if _is_private(name))
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return frozenset(names)
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
            and _is_private(node.attr)
        ):
            names.add(node.attr)
    return frozenset(names)


def _bokeh_bases_privates(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for base in cls.__mro__:
        if _is_bokeh_class(base):
            names |= _class_privates(base)
    return frozenset(names)


@functools.cache
def bokeh_private_names() -> dict[str, frozenset[str]]:
    """Every private name of the Bokeh classes and modules app_server might reach: where from."""
    owners: dict[str, set[str]] = {}
    classes: set[type] = set()
    for module in _bokeh_modules():
        for name, value in vars(module).items():
            if _is_private(name):
                owners.setdefault(name, set()).add(module.__name__)
            if isinstance(value, type) and _is_bokeh_class(value):
                classes.update(base for base in value.__mro__ if _is_bokeh_class(base))
    for cls in classes:
        for name in _class_privates(cls):
            owners.setdefault(name, set()).add(f"{cls.__module__}.{cls.__qualname__}")
    return {name: frozenset(where) for name, where in owners.items()}


@dataclass(frozen=True)
class Reach:
    line: int
    code: str
    name: str


def _own_accesses(tree: ast.AST) -> dict[int, ast.ClassDef]:
    """The ``self._x``/``cls._x`` of each method (by its first parameter), with its class."""
    own: dict[int, ast.ClassDef] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for method in node.body:
            if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not method.args.args:
                continue
            first = method.args.args[0].arg
            for sub in ast.walk(method):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == first
                ):
                    own[id(sub)] = node
    return own


def private_reaches(source: str, module: types.ModuleType | None) -> list[Reach]:
    """Where ``source`` uses a private Bokeh name.

    - ``x._name`` when ``_name`` is a private name of a Bokeh class or module, unless ``x`` is
      a method's own ``self``/``cls`` (so ``super()._name`` and a function's ``cls`` count);
    - ``self._name``, and a method or attribute ``_name`` defined, in a class of ``module``
      that derives from a Bokeh class with that private name;
    - a string that is such a name (``getattr(obj, "_name")``), or ``getattr(obj, f"_{x}")``;
    - ``from bokeh... import _name``, a private Bokeh module, a ``_keyword=`` argument.

    app_server's own private names (``session._expiration_blocks``) are none of these.
    """
    bokeh_names = bokeh_private_names()
    tree = ast.parse(source)
    own = _own_accesses(tree)
    found: list[Reach] = []

    def add(node: ast.AST, name: str) -> None:
        found.append(Reach(getattr(node, "lineno", 0), ast.unparse(node), name))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            if id(node) not in own and node.attr in bokeh_names:
                add(node, node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.isidentifier() and node.value in bokeh_names:
                add(node, node.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.JoinedStr)
            and node.args[1].values
        ):
            head = node.args[1].values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("_"):
                add(node, ast.unparse(node.args[1]))  # a computed private name: f"_{name}"
        elif isinstance(node, ast.keyword) and node.arg and _is_private(node.arg):
            add(node, node.arg)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "bokeh":
                if any(_is_private(part) for part in node.module.split(".")):
                    add(node, node.module)
                found.extend(
                    Reach(node.lineno, ast.unparse(node), alias.name)
                    for alias in node.names
                    if _is_private(alias.name)
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "bokeh" and any(_is_private(part) for part in parts):
                    found.append(Reach(node.lineno, ast.unparse(node), alias.name))
        elif isinstance(node, ast.ClassDef) and module is not None:
            cls = getattr(module, node.name, None)
            if isinstance(cls, type) and any(_is_bokeh_class(b) for b in cls.__mro__):
                found.extend(_subclass_reaches(node, own, _bokeh_bases_privates(cls)))
    return found


def _subclass_reaches(
    node: ast.ClassDef, own: dict[int, ast.ClassDef], inherited: frozenset[str]
) -> list[Reach]:
    found = []
    for item in node.body:
        defined: list[str] = []
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            defined = [item.name]
        elif isinstance(item, ast.Assign):
            defined = [t.id for t in item.targets if isinstance(t, ast.Name)]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            defined = [item.target.id]
        found += [
            Reach(item.lineno, f"{node.name}.{name} overrides Bokeh's", name)
            for name in defined
            if name in inherited
        ]
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and own.get(id(sub)) is node and sub.attr in inherited:
            found.append(Reach(sub.lineno, ast.unparse(sub), sub.attr))
    return found


OUTSIDE_ADAPTERS = [
    (path, name) for path, name in _app_server_modules() if not path.is_relative_to(ADAPTERS)
]


@pytest.mark.parametrize(
    ("path", "module_name"),
    OUTSIDE_ADAPTERS,
    ids=[str(path.relative_to(PACKAGE)) for path, _ in OUTSIDE_ADAPTERS],
)
def test_no_module_outside_the_adapters_reaches_a_private_bokeh_name(
    path: Path, module_name: str
) -> None:
    module = importlib.import_module(module_name)
    reaches = private_reaches(path.read_text(), module)
    names = bokeh_private_names()
    assert not reaches, "\n".join(
        [f"{path.relative_to(PACKAGE.parent)} reaches into bokeh {VERSION}'s private API:"]
        + [
            f"  line {r.line}: {r.code}  ({', '.join(sorted(names.get(r.name, ()))[:3])})"
            for r in reaches
        ]
        + ["Move it into an adapter in app_server/_bokeh/, with a contract in this file."]
    )


ADAPTER_MODULES = sorted(p for p in ADAPTERS.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", ADAPTER_MODULES, ids=lambda p: p.name)
def test_every_reach_of_the_adapters_is_checked_by_a_contract(path: Path) -> None:
    module = importlib.import_module(f"app_server._bokeh.{path.stem}")
    checked = {name for contract in INTERNALS for name in contract.names}
    unchecked = sorted(
        f"line {r.line}: {r.code}"
        for r in private_reaches(path.read_text(), module)
        if r.name not in checked
    )
    assert not unchecked, (
        f"app_server/_bokeh/{path.name} reaches Bokeh internals no contract checks: "
        f"{unchecked}; add an @internal check to tests/test_bokeh_internals.py"
    )


def test_the_guard_finds_reaches_and_spares_app_servers_own_names() -> None:
    source = textwrap.dedent(
        """
        from bokeh.io.doc import _PATCHED_CURDOCS
        import bokeh.core._private_module
        document._roots = []
        models = document.models._new_models
        hook = getattr(handler, "_lifecycle_handler", None)
        other = getattr(target, f"_{name}", None)
        label = f"_bucket{name}"
        names = cls.properties(_with_props=True)
        overridden = cls._overridden_defaults()
        value = super()._encode(obj)
        session._expiration_blocks += 1
        context._app_server_only = 1
        """
    )
    found = {r.name for r in private_reaches(source, None)}
    assert found == {
        "_PATCHED_CURDOCS",
        "bokeh.core._private_module",
        "_roots",
        "_new_models",
        "_lifecycle_handler",
        "f'_{name}'",
        "_with_props",
        "_overridden_defaults",
        "_encode",
    }


def test_the_guard_sees_a_subclass_using_what_it_inherits_from_bokeh() -> None:
    module = types.ModuleType("guard_example")
    source = textwrap.dedent(
        """
        class Mine(Serializer):
            _own = None
            def _encode(self, obj):
                return self._buffers, self._own
        """
    )
    exec(compile(source, "guard_example", "exec"), {"Serializer": Serializer}, vars(module))
    found = sorted(r.code for r in private_reaches(source, module))
    assert found == ["Mine._encode overrides Bokeh's", "self._buffers"]


@pytest.mark.parametrize(
    ("module_name", "name", "importer"),
    sorted(
        {
            (node.module, alias.name, str(path.relative_to(PACKAGE.parent)))
            for path, _ in _app_server_modules()
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "bokeh"
            for alias in node.names
        }
    ),
)
def test_every_bokeh_import_of_app_server_resolves(
    module_name: str, name: str, importer: str
) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.fail(f"bokeh {VERSION}: {importer} imports {module_name}: {exc}", pytrace=False)
    if not hasattr(module, name):
        try:
            importlib.import_module(f"{module_name}.{name}")
        except ImportError:
            pytest.fail(
                f"bokeh {VERSION}: {importer} imports {name} from {module_name}, "
                "which no longer has it",
                pytrace=False,
            )


def test_a_session_context_is_held_weakly() -> None:
    """attach_session_context holds the context weakly, as Bokeh's server does."""
    document = Document()
    context = _Context()
    attach_session_context(document, context)  # type: ignore[arg-type]
    reference = weakref.ref(context)
    del context
    assert reference() is None and document.session_context is None
