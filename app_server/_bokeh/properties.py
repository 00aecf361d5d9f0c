"""Which attributes of a model Bokeh serializes, found without computing every default.

Bokeh sends a model's attributes that differ from their defaults, but to find them
``HasProps.query_properties_with_values`` computes the default of every property of every
model (copying and validating it), and throws most of them away. Whether skipping a property
is safe depends only on the model's class: :func:`serialization_plan` decides it once per
class, :func:`changed_attributes` applies it. The result is Bokeh's
(``tests/protocol/test_serializer.py`` compares the bytes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bokeh.core.has_props import HasProps
from bokeh.core.property.singletons import Undefined
from bokeh.core.property.wrappers import PropertyValueContainer
from bokeh.model import Model

if TYPE_CHECKING:
    from bokeh.core.property.descriptors import PropertyDescriptor

__all__ = ["Plan", "changed_attributes", "serialization_plan"]

# (name, descriptor, skip_when_unset) for each serialized property, in Bokeh's order
Plan = list[tuple[str, "PropertyDescriptor[Any]", bool]]


def serialization_plan(cls: type[Model]) -> Plan | None:
    """How to read the attributes of ``cls``; None when the class serializes itself its own way.

    A property the model has not set may be left unread when its default is stable (not made
    by a function, so reading it changes nothing) and defined (reading it would not raise
    Bokeh's ``UnsetValueError``): Bokeh reads it only to drop it.

    Why not public: the order of the properties (``properties(_with_props=True)``, a dict;
    the public ``properties()`` is a set), the defaults a subclass overrides over its whole
    MRO (``_overridden_defaults``) and whether a property's default is made by a function
    (``Property._may_have_unstable_default``) are private. The public
    ``PropertyDescriptor.has_unstable_default`` wants an instance, and on bokeh 3.9 reads
    only the class's own overrides.
    """
    if (
        cls.to_serializable is not Model.to_serializable
        or cls.properties_with_values is not HasProps.properties_with_values
        or cls.query_properties_with_values is not HasProps.query_properties_with_values
        or cls.themed_values is not HasProps.themed_values
    ):
        return None
    overridden = cls._overridden_defaults()
    plan: Plan = []
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


def changed_attributes(model: Model, plan: Plan) -> dict[str, Any]:
    """``model.properties_with_values(include_defaults=False)``, without the defaults.

    Why not public: which properties a model has set (``_property_values``) and which unstable
    defaults it holds (``_unstable_default_values``) have no public accessor;
    ``properties_with_values`` computes every default to find them, the cost this avoids.
    """
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
