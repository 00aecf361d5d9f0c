"""Bokeh's serializer with a faster way to find the attributes a model sends.

Bokeh sends a model's attributes that differ from their defaults, but to find them
``HasProps.query_properties_with_values`` computes the default of every property of every
model (copying and validating it), and throws most of them away: about 80% of a PULL-DOC's
serialization. Whether skipping a property is safe depends only on the model's class, so
:class:`Serializer` decides it once per class and leaves out those properties unread. The
output is Bokeh's, byte for byte (``tests/protocol/test_serializer.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from bokeh import __version__ as bokeh_version
from bokeh.core import serialization
from bokeh.core.has_props import HasProps
from bokeh.core.property.singletons import Undefined
from bokeh.core.property.wrappers import PropertyValueContainer
from bokeh.model import DataModel, Model
from bokeh.settings import settings

if TYPE_CHECKING:
    from bokeh.core.property.descriptors import PropertyDescriptor
    from bokeh.document import Document

__all__ = ["Serializer", "document_json"]

# (name, descriptor, skip_when_unset) for each serialized property, in Bokeh's order
_Plan = list[tuple[str, "PropertyDescriptor[Any]", bool]]

_plans: WeakKeyDictionary[type[Model], _Plan | None] = WeakKeyDictionary()


def _plan(cls: type[Model]) -> _Plan | None:
    """How to read the attributes of ``cls``; None when the class serializes itself its own way.

    A property the model has not set may be left unread when its default is stable (not made
    by a function, so reading it changes nothing) and defined (reading it would not raise
    Bokeh's ``UnsetValueError``): Bokeh reads it only to drop it.
    """
    if (
        cls.to_serializable is not Model.to_serializable
        or cls.properties_with_values is not HasProps.properties_with_values
        or cls.query_properties_with_values is not HasProps.query_properties_with_values
        or cls.themed_values is not HasProps.themed_values
    ):
        return None
    overridden = cls._overridden_defaults()
    plan: _Plan = []
    for name in cls.properties(_with_props=True):
        descriptor = cls.lookup(name)
        if not descriptor.serialized:
            continue
        stable = not (
            descriptor.property._may_have_unstable_default()
            or descriptor.is_unstable(overridden.get(name))
        )
        plan.append((name, descriptor, stable and descriptor.class_default(cls) is not Undefined))
    return plan


def _attributes(model: Model, plan: _Plan) -> dict[str, Any]:
    """``model.properties_with_values(include_defaults=False)``, without the defaults."""
    values = model._property_values
    unstable = model._unstable_default_values
    themed = model.themed_values() or {}
    # taken before reading: reading an unstable default stores it (as in Bokeh)
    selected = values.keys() | unstable.keys() | themed.keys()
    result = {}
    for name, descriptor, skip_when_unset in plan:
        if skip_when_unset and name not in selected:
            continue
        value = descriptor.get_value(model)  # raises UnsetValueError as Bokeh's does
        if name not in selected:
            continue
        if name not in themed and isinstance(value, PropertyValueContainer) and name in unstable:
            continue
        result[name] = value
    return result


class Serializer(serialization.Serializer):
    """``bokeh.core.serialization.Serializer``, with models' attributes found per class plan."""

    # Bokeh reads this setting (from the environment, ~7 µs) for every model; read once
    _include_defaults: bool | None = None

    def _encode(self, obj: Any) -> Any:
        if isinstance(obj, Model):
            if self._include_defaults is None:
                self._include_defaults = settings.serialize_include_defaults()
            if self._include_defaults:
                return super()._encode(obj)
            cls = type(obj)
            try:
                plan = _plans[cls]
            except KeyError:
                plan = _plans[cls] = _plan(cls)
            if plan is not None:
                self.add_ref(obj, obj.ref)
                rep: dict[str, Any] = {
                    "type": "object",
                    "name": obj.__qualified_model__,
                    "id": obj.id,
                }
                attributes = {
                    name: self.encode(value) for name, value in _attributes(obj, plan).items()
                }
                if attributes:
                    rep["attributes"] = attributes
                return rep
        return super()._encode(obj)


def document_json(document: Document) -> serialization.Serialized[Any]:
    """``document.to_json()`` (bokeh 3.9 and 3.10), through :class:`Serializer`."""
    # Bokeh's is_DataModel(cls), without the import statement it runs for each of ~600 classes
    data_models = [
        cls
        for cls in Model.model_class_reverse_map.values()
        if getattr(cls, "__data_model__", False) and cls is not DataModel
    ]
    serializer = Serializer()
    defs = serializer.encode(data_models)
    config = serializer.encode(document._config)
    roots = serializer.encode(document._roots)
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
