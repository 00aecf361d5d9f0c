"""app_server.testing drives an app's sessions in-process, as app authors' tests need."""

from __future__ import annotations

from bokeh.document import Document
from bokeh.events import ButtonClick, DoubleTap
from bokeh.io import curdoc
from bokeh.models import Button, Div
from bokeh.plotting import figure

from app_server.testing import AppTestClient


def ticking(doc: Document) -> None:
    counter = Div(text="0", name="counter")
    args = curdoc().session_context.request.arguments
    start = int(args["start"][0]) if "start" in args else 0
    counter.text = str(start)

    def tick() -> None:
        counter.text = str(int(counter.text) + 1)

    doc.add_periodic_callback(tick, 60_000)  # far too slow to wait for in a test
    doc.add_timeout_callback(lambda: setattr(counter, "tags", ["timed out"]), 50)
    plot = figure(name="plot")
    plot.on_event(DoubleTap, lambda event: setattr(counter, "text", f"tap {event.x:.0f}"))
    button = Button(name="button")
    button.on_event(ButtonClick, lambda: setattr(counter, "text", "clicked"))
    doc.add_root(counter)
    doc.add_root(plot)
    doc.add_root(button)


async def test_periodic_callbacks_run_on_demand() -> None:
    async with AppTestClient(ticking) as client:
        session = await client.open_session(arguments={"start": "10"})
        assert session.model("counter").text == "10"
        assert await session.run_periodic_callbacks() == 1
        await session.run_periodic_callbacks()
        assert session.model("counter").text == "12"


async def test_timeout_callbacks_are_awaited_in_real_time() -> None:
    async with AppTestClient(ticking) as client:
        session = await client.open_session()
        await session.wait_for(lambda: session.model("counter").tags == ["timed out"])


async def test_ui_events_reach_python_callbacks() -> None:
    async with AppTestClient(ticking) as client:
        session = await client.open_session()
        await session.click("button")
        assert session.model("counter").text == "clicked"
        await session.trigger("plot", lambda plot: DoubleTap(plot, x=42, y=1, sx=0, sy=0))
        assert session.model("counter").text == "tap 42"


async def test_many_sessions_each_with_their_own_document() -> None:
    async with AppTestClient(ticking) as client:
        sessions = [await client.open_session(arguments={"start": str(n)}) for n in range(5)]
        for session in sessions:
            await session.run_periodic_callbacks()
        assert [s.model("counter").text for s in sessions] == ["1", "2", "3", "4", "5"]
        assert len({s.id for s in sessions}) == 5
