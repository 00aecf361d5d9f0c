"""A PULL-DOC is Bokeh's own ``Document.to_json()``, byte for byte, only cheaper to make.

Two documents built the same way get different model ids, so each comparison builds one
document for Bokeh and one for app_server and numbers the ids in order of appearance.
"""

from __future__ import annotations

import json
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bokeh import __version__ as bokeh_version
from bokeh.application import Application
from bokeh.application.handlers import ScriptHandler
from bokeh.core import serialization as bokeh_serialization
from bokeh.core.properties import Instance, Int, List, Nullable, Override, Required, String
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div, Model, Slider
from bokeh.plotting import figure
from bokeh.settings import settings
from bokeh.themes import Theme
from bokeh.util.warnings import BokehUserWarning

from app_server import protocol
from app_server.protocol.message import dumps
from app_server.protocol.serializer import Serializer as AppServerSerializer

ROOT = Path(__file__).resolve().parents[2]
APPS = [
    ROOT / "bench" / "apps" / "small.py",
    ROOT / "bench" / "apps" / "stream.py",
    ROOT / "examples" / "demo.py",
]


class Annotated(Div):
    """A user's model: an overridden default, a plain property, defaults made by functions."""

    text = Override(default="annotated")
    label = Nullable(String)
    marks = List(Int, default=lambda: [1, 2])
    extra = Nullable(Instance(Div), default=lambda: Div(text="made"))
    stamp = String(default=lambda: "generated")


class NeedsName(Model):
    name_of = Required(String)


def _renumbered(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every model id replaced by its order of appearance."""
    if isinstance(value, dict):
        return {
            key: ids.setdefault(item, f"#{len(ids)}")
            if key == "id" and isinstance(item, str)
            else _renumbered(item, ids)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_renumbered(item, ids) for item in value]
    return value


def _canonical(frames: list[str | bytes]) -> list[Any]:
    """The frames after the header, with every id replaced by its order of appearance."""
    ids: dict[str, str] = {}
    return [_renumbered(json.loads(f), ids) if isinstance(f, str) else f for f in frames[1:]]


# bokeh 3.9: a PULL-DOC-REPLY carries its arrays base64 in the JSON (BokehJS 3.9 drops the
# binary buffers of a document pulled again after a reconnect), as to_json(deferred=False)
INLINE = tuple(int(part) for part in bokeh_version.split(".")[:2]) < (3, 10)


def _bokehs(document: Document) -> list[Any]:
    if INLINE:
        content, buffers = document.to_json(deferred=False), []
    else:
        serialized = document.to_json()
        content, buffers = serialized.content, serialized.buffers or []
    message = protocol.make_message(
        protocol.PULL_DOC_REPLY, {"doc": content}, reqid="r", buffers=buffers
    )
    return _canonical(protocol.encode(message))


def _ours(document: Document) -> list[Any]:
    return _canonical(protocol.encode(protocol.pull_doc_reply("r", document)))


def _assert_same(build: Callable[[], Document]) -> None:
    theirs, mine = build(), build()
    assert _ours(mine) == _bokehs(theirs)
    assert _ours(mine) == _bokehs(theirs)  # and again, once synced


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.stem)
def test_an_apps_document_serializes_as_bokehs(path: Path) -> None:
    application = Application(ScriptHandler(filename=str(path)))
    _assert_same(application.create_document)


def test_a_document_of_large_numpy_columns_serializes_as_bokehs() -> None:
    def build() -> Document:
        rng = np.random.default_rng(0)
        source = ColumnDataSource(data={name: rng.random(50_000) for name in "xyz"})
        plot = figure()
        plot.scatter("x", "y", source=source)
        document = Document()
        document.add_root(plot)
        return document

    _assert_same(build)


def test_a_themed_document_serializes_as_bokehs() -> None:
    theme = Theme(
        json={
            "attrs": {
                "Plot": {"background_fill_color": "#eeeeee", "width": 333},
                "Title": {"text_font_size": "20px"},
                "Div": {"styles": {"color": "red"}},
            }
        }
    )

    def build() -> Document:
        document = Document()
        document.theme = theme
        plot = figure(title="themed")
        plot.line([1, 2, 3], [3, 1, 2])
        document.add_root(plot)
        document.add_root(Div(text="x"))
        return document

    _assert_same(build)


def test_user_models_with_overridden_and_generated_defaults_serialize_as_bokehs() -> None:
    def build() -> Document:
        document = Document()
        untouched = Annotated()
        changed = Annotated(label="set", marks=[3])
        mutated = Annotated()
        mutated.marks.append(9)  # a default made by a function, changed in place
        source = ColumnDataSource(data={"x": [1, 2]})
        document.add_root(untouched)
        document.add_root(changed)
        document.add_root(mutated)
        document.add_root(Slider(start=0, end=1, value=0.5, title=None))
        document.add_root(source)
        return document

    _assert_same(build)


def test_a_required_property_left_unset_fails_as_in_bokeh() -> None:
    document = Document()
    document.add_root(NeedsName())
    with pytest.raises(UnsetValueError):
        document.to_json()
    with pytest.raises(UnsetValueError):
        protocol.pull_doc_reply("r", document)


def test_bokehs_include_defaults_setting_is_respected() -> None:
    def build() -> Document:
        document = Document()
        document.add_root(Div(text="all"))
        return document

    settings.serialize_include_defaults.set_value(True)
    try:
        _assert_same(build)
        assert "margin" in json.dumps(_ours(build()))
    finally:
        settings.serialize_include_defaults.unset_value()


def _serialized_events(serializer: bokeh_serialization.Serializer, values: list[Any]) -> Any:
    source = ColumnDataSource(data={"x": []})
    document = Document()
    document.add_root(source)
    events: list[Any] = []
    document.on_change(events.append)
    source.stream({"x": values})
    return serializer.encode(events)


PLAIN_LISTS = [
    [1, 2.5, -0.0, "a", None, True, False],
    [2**53 - 1, -(2**53) + 1],  # the largest integers JavaScript holds exactly
    [2**53],  # Bokeh warns and writes a float
    [float("nan"), 1.0],  # Bokeh writes {"type": "number", "value": "nan"}
    [float("inf"), float("-inf")],
    [np.float64(0.5), np.int64(3)],  # numpy scalars: Bokeh's own path
    [[1, 2], (3, 4), {"k": 5}],  # containers
    [],
]


@pytest.mark.parametrize("values", PLAIN_LISTS, ids=repr)
def test_a_list_of_plain_values_serializes_as_bokehs(values: list[Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BokehUserWarning)
        theirs = _serialized_events(bokeh_serialization.Serializer(), values)
        mine = _serialized_events(AppServerSerializer(), values)
    assert _renumbered(mine, {}) == _renumbered(theirs, {})


def test_an_encoder_registered_for_a_plain_type_is_used_as_by_bokeh() -> None:
    bokeh_serialization.Serializer.register(float, lambda value, serializer: round(value))
    try:
        mine = _serialized_events(AppServerSerializer(), [0.4, 2.6])
    finally:
        del bokeh_serialization.Serializer._encoders[float]  # Bokeh has no unregister
    assert mine[0]["data"]["entries"][0][1] == [0, 3]


def _encoded(serializer: bokeh_serialization.Serializer, value: Any) -> tuple[Any, list[bytes]]:
    """The JSON the value encodes to (ids renumbered) and the bytes of its buffers."""
    rep = json.loads(dumps(serializer.encode(value)))
    return _renumbered(rep, {}), [buffer.to_bytes() for buffer in serializer.buffers]


_ARRAYS = {
    **{
        name: np.arange(12, dtype=name) % 3
        for name in ("float64", "float32", "int32", "int16", "int8", "uint8", "uint16", "uint32")
    },
    "bool": np.arange(5) % 2 == 0,
    "float64 2-d": np.linspace(0, 1, 12).reshape(3, 4),
    "empty": np.zeros(0),
    # Bokeh's own path: transformed, copied, or not sent as a buffer
    "fortran order": np.asfortranarray(np.linspace(0, 1, 12).reshape(3, 4)),
    "strided": np.arange(20.0)[::3],
    "int64 (cast to int32)": np.arange(5, dtype="int64"),
    "int64 out of int32's range": np.array([2**40, 1]),
    "big-endian": np.arange(4, dtype=">f8"),
    "0-d": np.array(2.5),
    "masked": np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]),
    "datetime64": np.array(["2026-12-05", "2026-12-06"], dtype="datetime64[D]"),
    "strings": np.array(["a", "bc"]),
    "objects": np.array([1, "a", None], dtype=object),
}


@pytest.mark.parametrize("deferred", [True, False], ids=["buffers", "base64"])
@pytest.mark.parametrize("name", list(_ARRAYS))
def test_an_array_serializes_as_bokehs(name: str, deferred: bool) -> None:
    value = {"column": _ARRAYS[name]}
    theirs = _encoded(bokeh_serialization.Serializer(deferred=deferred), value)
    assert _encoded(AppServerSerializer(deferred=deferred), value) == theirs


def test_an_encoder_registered_for_arrays_is_used_as_by_bokeh() -> None:
    bokeh_serialization.Serializer.register(np.ndarray, lambda array, serializer: "an array")
    try:
        mine = AppServerSerializer().encode({"column": np.arange(3.0)})
    finally:
        del bokeh_serialization.Serializer._encoders[np.ndarray]
    assert mine["entries"][0][1] == "an array"


def _encode_each(columns: list[np.ndarray[Any, Any]], deferred: bool) -> None:
    """Each column in a message of its own, encoded as it is sent, then dropped."""
    for column in columns:
        serializer = AppServerSerializer(deferred=deferred)
        dumps(serializer.encode({"column": column}))
        for buffer in serializer.buffers:
            buffer.to_bytes()


@pytest.mark.parametrize("deferred", [True, False], ids=["buffers", "base64"])
def test_encoding_an_array_leaves_nothing_on_it(deferred: bool) -> None:
    """Once the message is gone, the app's arrays hold no more memory than before. numpy keeps
    a buffer's description (72-80 bytes) on an array from its first export to its end, which
    for a document's column is the session's end: the buffer is taken from a view. (Bokeh's
    own serializer leaves about 125 bytes per array.)"""
    _encode_each([np.linspace(0, 1, 10) for _ in range(5)], deferred)  # one-off allocations
    columns = [np.linspace(0, 1, 1000) for _ in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _encode_each(columns, deferred)
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert left / len(columns) < 16, f"{left / len(columns):.0f} bytes left per array"
