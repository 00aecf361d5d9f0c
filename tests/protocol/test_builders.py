"""Patches reference the models the peer has and define the ones it does not, as Bokeh's do."""

from __future__ import annotations

from bokeh.core.serialization import Serializer
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
from bokeh.models import Column, Div

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
