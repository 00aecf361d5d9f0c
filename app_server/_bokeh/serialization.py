"""Bokeh's ``Serializer`` with the parts app_server builds on made public."""

from __future__ import annotations

from typing import Any

from bokeh.core import serialization
from bokeh.core.serialization import Buffer, Ref
from bokeh.model import Model

__all__ = ["Serializer"]


class Serializer(serialization.Serializer):
    """``bokeh.core.serialization.Serializer``, with a hook per model and its tables in place.

    Subclasses override :meth:`encode_model`; :attr:`references_by_id`,
    :meth:`buffer_count` and :meth:`buffers_from` read the serializer's state without copies.
    """

    def _encode(self, obj: Any) -> Any:
        # Why not public: encode() resolves references, then dispatches every object through
        # the private _encode; Bokeh has no public hook per object.
        if isinstance(obj, Model):
            return self.encode_model(obj)
        return super()._encode(obj)

    def encode_model(self, model: Model) -> Any:
        """A model's representation, as Bokeh makes it (``Model.to_serializable``)."""
        return super()._encode(model)

    @property
    def references_by_id(self) -> dict[int, Ref]:
        """The live ``id(obj) -> Ref`` table behind ``get_ref`` and ``add_ref``.

        Why not public: ``get_ref``/``add_ref`` cost a method call per encoded object, and
        ``add_ref`` asserts; a subclass's ``get_ref`` reads and fills the table directly.
        """
        return self._references

    def buffer_count(self) -> int:
        """How many buffers the serializer holds so far.

        Why not public: the public ``buffers`` copies the list on every read.
        """
        return len(self._buffers)

    def buffers_from(self, start: int) -> list[Buffer]:
        """The buffers added since there were ``start`` (see :meth:`buffer_count`).

        Why not public: the public ``buffers`` copies the whole list first.
        """
        return self._buffers[start:]
