"""A discarded session releases everything: its Document and models become garbage."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure

from app_server import memory
from app_server.testing import AppTestClient, TestSession


def plot_app(doc: Document) -> None:
    x = np.linspace(0, 10, 20_000)
    source = ColumnDataSource(data={"x": x, "y": np.sin(x)})
    plot = figure(height=300, width=400)
    plot.line("x", "y", source=source)
    slider = Slider(start=0, end=10, value=1, title="f", name="slider")
    slider.on_change("value", lambda attr, old, new: source.data.update(y=np.sin(new * x)))
    doc.add_periodic_callback(lambda: None, 1000)
    doc.add_root(column(slider, plot))


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def open_and_close(client: AppTestClient, count: int) -> list[weakref.ref[object]]:
    """Open ``count`` sessions, use them, close their tabs and let the reaper discard them."""
    sessions: list[TestSession] = [await client.open_session() for _ in range(count)]
    refs: list[weakref.ref[object]] = []
    for session in sessions:
        await session.set("slider", "value", 2)
        document = session.server_session.document
        refs.append(weakref.ref(document))
        refs += [weakref.ref(model) for model in document.models]
        session.server_session.unsubscribe(session)  # the tab closed
    client.sessions.clear()
    del sessions, session, document
    assert await client.server.reap_once(lifetime=0) == count
    await asyncio.sleep(0)  # the cancelled callback tasks finish and let go of their sessions
    return refs


async def test_reaped_sessions_leave_no_document_or_model_behind() -> None:
    async with AppTestClient(plot_app) as client:
        refs = await open_and_close(client, 10)
        gc.collect()
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], f"{len(alive)} objects of discarded sessions are still reachable"
        assert client.context.sessions == {}


async def test_memory_does_not_grow_across_waves_of_sessions() -> None:
    async with AppTestClient(plot_app, manage_process_memory=True) as client:
        rss = []
        for _ in range(8):
            await open_and_close(client, 15)
            gc.collect()
            rss.append(rss_bytes())
        # over 6 waves, so that a one-off step of a few MB (an allocator arena, a lazy import)
        # does not read as growth
        growth_per_wave = (rss[-1] - rss[1]) / 6
        # a leak of the ~1 MB each session holds would add ~15 MB a wave
        assert growth_per_wave < 2 * 1024 * 1024, [r // 1024 for r in rss]


async def test_a_slow_collection_spaces_out_the_next_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discards keep coming; a collection that takes 50 ms waits a second before the next."""
    collections: list[float] = []

    def slow_collection(trim: object) -> None:
        collections.append(time.monotonic())
        time.sleep(0.05)

    monkeypatch.setattr(memory, "release_memory", slow_collection)
    monkeypatch.setattr(memory, "COLLECT_DELAY", 0.01)
    async with AppTestClient(plot_app, manage_process_memory=True) as client:
        for _ in range(40):  # a discard every 10 ms for about half a second
            client.server.memory.collect_soon()
            await asyncio.sleep(0.01)
    assert len(collections) == 1
