"""Bokeh's ``Serializer`` with the parts app_server builds on made public."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from bokeh.core import serialization
from bokeh.core.serialization import Buffer, Ref
from bokeh.model import Model
from bokeh.util.serialization import BINARY_ARRAY_TYPES

__all__ = ["Serializer"]

# what Bokeh encodes as itself in a list: None, bool, str, an int within JavaScript's safe range
# (Number.MAX_SAFE_INTEGER), a finite float; the exact types, not subclasses such as numpy's
_MAX_SAFE_INT = 2**53 - 1
_PLAIN_TYPES = frozenset({type(None), bool, str, int, float})
# the dtypes Bokeh sends as binary buffers, and their names (numpy computes a name in Python)
_BINARY_NAMES = {dtype: dtype.name for dtype in BINARY_ARRAY_TYPES}


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
        if type(obj) is list:
            plain = self._plain_list(obj)
            if plain is not None:
                return plain
        elif type(obj) is np.ndarray:
            binary = self._binary_array(obj)
            if binary is not None:
                return binary
        return super()._encode(obj)

    def _binary_array(self, array: np.ndarray[Any, Any]) -> dict[str, Any] | None:
        """What Bokeh makes of a contiguous array of a dtype it sends as a binary buffer (a
        column of floats or ints), at half its cost; else None. Bokeh's way goes through its
        whole chain of type tests, its array transforms (which leave such an array as it is)
        and numpy's dtype name, which numpy computes in Python.

        Why not public: the buffer (or its base64, when not deferred) is what Bokeh's
        ``Serializer._encode_bytes`` makes, and an encoder registered for arrays
        (``Serializer._encoders``) would replace all of this.
        """
        name = _BINARY_NAMES.get(array.dtype)
        if name is None or not array.ndim or not array.flags.c_contiguous:
            return None
        if np.ndarray in self._encoders:
            return None
        return {
            "type": "ndarray",
            # through a view: numpy keeps a buffer's description (about 80 bytes) on an array
            # from its first export to its end, the document's end here; a view's goes with it
            "array": self._encode_bytes(array.view().data),
            "shape": list(array.shape),
            "dtype": name,
            "order": sys.byteorder,
        }

    def _plain_list(self, values: list[Any]) -> list[Any] | None:
        """A copy of ``values`` when Bokeh would encode every item as itself (a list a
        callback streams or sets: each item costs Bokeh a dispatch and a reference lookup,
        about ten times this check); else None.

        Why not public: an encoder registered for one of those types (``Serializer.register``,
        kept in ``Serializer._encoders``) would change that, and only that table says so.
        """
        if not _PLAIN_TYPES.isdisjoint(self._encoders):
            return None
        for value in values:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # nan or infinite: Bokeh writes {"type": "number"}
                    return None
            elif kind is int:
                if not -_MAX_SAFE_INT < value <= _MAX_SAFE_INT:
                    return None
            elif kind not in _PLAIN_TYPES:
                return None
        return values.copy()

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
