"""What a session sends: each lock hold's changes as one message, never echoed to their source."""

from __future__ import annotations

from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div, Slider

from app_server import protocol
from app_server.testing import AppTestClient


class Recorder:
    """A connection that keeps every message the session sends it."""

    def __init__(self) -> None:
        self.synced = True
        self.receiver = protocol.Receiver()
        self.messages: list[protocol.Message] = []

    def send(self, frames: list[protocol.Frame]) -> None:
        for frame in frames:
            message = self.receiver.receive_frame(frame)
            assert not isinstance(message, protocol.ProtocolViolation)
            if message is not None:
                self.messages.append(message)

    def drop(self, code: int, reason: str) -> None:
        self.dropped = (code, reason)

    def events(self) -> list[dict]:
        return [e for m in self.messages if m.msgtype == "PATCH-DOC" for e in m.content["events"]]


def app(doc: Document) -> None:
    div = Div(text="", name="div")
    slider = Slider(start=0, end=10, value=1, name="slider")

    def moved(attr: str, old: float, new: float) -> None:
        div.text = f"value {new}"
        doc.add_root(ColumnDataSource(data={"x": [new]}, name=f"source{new}"))

    slider.on_change("value", moved)
    doc.add_root(div)
    doc.add_root(slider)


async def test_one_lock_holds_changes_go_out_as_one_message_in_order() -> None:
    async with AppTestClient(app) as client:
        session = (await client.open_session()).server_session
        recorder = Recorder()
        session.subscribe(recorder)

        def change(doc: Document) -> None:
            doc.select_one({"name": "div"}).text = "a"
            doc.select_one({"name": "div"}).text = "b"
            doc.select_one({"name": "slider"}).end = 20

        await session.with_document_locked(change, session.document)
        assert [m.msgtype for m in recorder.messages] == ["PATCH-DOC"]
        assert [e.get("new") for e in recorder.events()] == ["a", "b", 20]


async def test_the_source_gets_the_callbacks_changes_but_not_its_own() -> None:
    async with AppTestClient(app) as client:
        test_session = await client.open_session()
        session = test_session.server_session
        other = Recorder()
        session.subscribe(other)

        await test_session.set("slider", "value", 3)

        kinds = [(e["kind"], e.get("attr")) for e in other.events()]
        assert ("ModelChanged", "value") in kinds, "others see the slider move"
        assert ("RootAdded", None) in kinds
        # the source applied the callback's changes, including the new model's definition
        assert test_session.model("div").text == "value 3"
        assert test_session.model("source3").data["x"] == [3]
        assert not test_session.errors
