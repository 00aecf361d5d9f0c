"""Bokeh's serializer with a faster way to find the attributes a model sends.

Bokeh sends a model's attributes that differ from their defaults, but to find them
``HasProps.query_properties_with_values`` computes the default of every property of every
model (copying and validating it), and throws most of them away: about 80% of a PULL-DOC's
serialization. Whether skipping a property is safe depends only on the model's class, so
:class:`Serializer` decides it once per class (``app_server._bokeh.properties``, which reads
Bokeh's property machinery) and leaves out those properties unread. The output is Bokeh's,
byte for byte (``tests/protocol/test_serializer.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from bokeh import __version__ as bokeh_version
from bokeh.core import serialization
from bokeh.model import DataModel, Model
from bokeh.settings import settings

from .._bokeh import serialization as bokeh_serialization
from .._bokeh.properties import Plan, changed_attributes, serialization_plan

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ["Serializer", "document_json"]

_plans: WeakKeyDictionary[type[Model], Plan | None] = WeakKeyDictionary()


class Serializer(bokeh_serialization.Serializer):
    """``bokeh.core.serialization.Serializer``, with models' attributes found per class plan."""

    # Bokeh reads this setting (from the environment, ~7 µs) for every model; read once
    _include_defaults: bool | None = None

    def encode_model(self, model: Model) -> Any:
        if self._include_defaults is None:
            self._include_defaults = settings.serialize_include_defaults()
        if self._include_defaults:
            return super().encode_model(model)
        cls = type(model)
        try:
            plan = _plans[cls]
        except KeyError:
            plan = _plans[cls] = serialization_plan(cls)
        if plan is None:
            return super().encode_model(model)
        self.add_ref(model, model.ref)
        rep: dict[str, Any] = {
            "type": "object",
            "name": model.__qualified_model__,
            "id": model.id,
        }
        attributes = {
            name: self.encode(value) for name, value in changed_attributes(model, plan).items()
        }
        if attributes:
            rep["attributes"] = attributes
        return rep


def document_json(
    document: Document, *, inline_buffers: bool = False
) -> serialization.Serialized[Any]:
    """``document.to_json()`` (bokeh 3.9 and 3.10), through :class:`Serializer`; with
    ``inline_buffers``, arrays are base64 in the JSON, as ``to_json(deferred=False)``."""
    # Bokeh's is_DataModel(cls), without the import statement it runs for each of ~600 classes
    data_models = [
        cls
        for cls in Model.model_class_reverse_map.values()
        if getattr(cls, "__data_model__", False) and cls is not DataModel
    ]
    serializer = Serializer(deferred=not inline_buffers)
    defs = serializer.encode(data_models)
    config = serializer.encode(document.config)
    roots = serializer.encode(document.roots)
    js_event_callbacks = document.callbacks.js_event_callbacks
    callbacks = serializer.encode(js_event_callbacks)
    doc_json: dict[str, Any] = {
        "version": bokeh_version,
        "title": document.title,
        "config": config,
        "roots": roots,
    }
    if data_models:
        doc_json["defs"] = defs
    if js_event_callbacks:
        doc_json["callbacks"] = callbacks
    document.models.flush_synced()
    return serialization.Serialized(doc_json, buffers=serializer.buffers)
