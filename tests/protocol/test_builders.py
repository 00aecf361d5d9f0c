"""Patches reference the models the peer has and define the ones it does not, as Bokeh's do."""

from __future__ import annotations

import numpy as np
from bokeh.core.serialization import Buffer, Serializer
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
from bokeh.models import Column, ColumnDataSource, Div

from app_server import protocol


def _synced_document() -> tuple[Document, Column]:
    document = Document()
    column = Column(children=[Div(text="a")])
    document.add_root(column)
    document.models.flush_synced()  # as after the PULL-DOC reply
    return document, column


def _bokehs_own(document: Document, event: ModelChangedEvent) -> object:
    return Serializer(references=document.models.synced_references).encode(event)


def test_a_model_the_peer_has_goes_as_a_reference() -> None:
    document, column = _synced_document()
    kept = column.children[0]
    column.children = [kept, kept]
    event = ModelChangedEvent(document, column, "children", column.children)
    expected = _bokehs_own(document, event)
    [(rep, buffers)] = protocol.serialize_events([event], document)
    assert rep == expected
    assert rep["new"] == [{"id": kept.id}, {"id": kept.id}]
    assert buffers == []


def test_a_new_model_is_defined_once_then_referenced_and_is_no_longer_new() -> None:
    document, column = _synced_document()
    added = Div(text="b")
    column.children = [*column.children, added]
    first = ModelChangedEvent(document, column, "children", column.children)
    second = ModelChangedEvent(document, column, "children", column.children)
    expected = _bokehs_own(document, first)
    (rep1, _), (rep2, _) = protocol.serialize_events([first, second], document)
    assert rep1 == expected
    assert rep1["new"][1]["type"] == "object" and rep1["new"][1]["id"] == added.id
    assert rep2["new"][1] == {"id": added.id}
    assert added in document.models.synced_references


def _buffers_in(rep: object) -> list[Buffer]:
    if isinstance(rep, Buffer):
        return [rep]
    if isinstance(rep, dict):
        return [b for value in rep.values() for b in _buffers_in(value)]
    if isinstance(rep, list | tuple):
        return [b for value in rep for b in _buffers_in(value)]
    return []


def test_each_serialized_event_carries_the_buffers_it_uses_and_no_other() -> None:
    document = Document()
    source = ColumnDataSource(data={"x": np.arange(3.0)})
    document.add_root(source)
    document.models.flush_synced()
    first = ModelChangedEvent(document, source, "data", {"x": np.arange(4.0)})
    second = ModelChangedEvent(
        document, source, "data", {"x": np.arange(5.0), "y": np.arange(5, dtype=np.int32)}
    )
    (rep1, buffers1), (rep2, buffers2) = protocol.serialize_events([first, second], document)
    assert buffers1 == _buffers_in(rep1) and len(buffers1) == 1
    assert buffers2 == _buffers_in(rep2) and len(buffers2) == 2
    message = protocol.patch_of_serialized([(rep1, buffers1), (rep2, buffers2)])
    assert message.buffers == [*buffers1, *buffers2]
