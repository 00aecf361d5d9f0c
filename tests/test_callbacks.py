"""Callbacks, locking and threads: every document change is serialised by the session lock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from functools import partial

import pytest
from bokeh.document import Document, without_document_lock
from bokeh.io import curdoc
from bokeh.models import Div

from app_server import DocumentAccessError
from app_server.testing import AppTestClient, TestSession


def one_div(doc: Document) -> None:
    doc.add_root(Div(text="start", name="div"))


@pytest.fixture
async def client() -> AsyncIterator[AppTestClient]:
    async with AppTestClient(one_div) as client:
        yield client


def server_div(session: TestSession) -> Div:
    return session.server_session.document.select_one({"name": "div"})


async def test_next_tick_callbacks_from_many_threads_each_run_once_in_order(
    client: AppTestClient,
) -> None:
    session = await client.open_session()
    doc = session.server_session.document
    div = server_div(session)
    ran: list[tuple[int, int]] = []

    def record(thread: int, n: int) -> None:
        ran.append((thread, n))
        div.text = str(len(ran))

    def add_many(thread: int) -> None:
        for n in range(1000):
            doc.add_next_tick_callback(partial(record, thread, n))

    threads = [threading.Thread(target=add_many, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    await session.wait_for(lambda: len(ran) == 8000, timeout=30)
    await session.settle()

    assert sorted(ran) == [(t, n) for t in range(8) for n in range(1000)], "each ran exactly once"
    for t in range(8):
        assert [n for thread, n in ran if thread == t] == list(range(1000)), "per-thread order"
    assert session.model("div").text == "8000", "no update lost on the client side"
    assert not session.errors


async def test_callbacks_on_one_document_never_interleave(client: AppTestClient) -> None:
    session = await client.open_session()
    doc = session.server_session.document
    spans: list[tuple[str, str]] = []

    def make(name: str):  # type: ignore[no-untyped-def]
        async def callback() -> None:
            spans.append(("enter", name))
            await asyncio.sleep(0.02)
            spans.append(("exit", name))

        return callback

    for name in "abcd":
        doc.add_next_tick_callback(make(name))
    await session.settle()
    assert [kind for kind, _ in spans] == ["enter", "exit"] * 4
    assert [spans[i][1] == spans[i + 1][1] for i in range(0, 8, 2)] == [True] * 4


async def test_callbacks_of_two_sessions_run_concurrently(client: AppTestClient) -> None:
    first, second = await client.open_session(), await client.open_session()
    inside = 0
    most_inside = 0

    async def callback() -> None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        await asyncio.sleep(0.05)
        inside -= 1

    first.server_session.document.add_next_tick_callback(callback)
    second.server_session.document.add_next_tick_callback(callback)
    await first.settle()
    await second.settle()
    assert most_inside == 2


async def test_a_change_from_a_foreign_thread_fails_loudly_and_sends_nothing(
    client: AppTestClient,
) -> None:
    session = await client.open_session()
    div = server_div(session)
    errors: list[BaseException] = []

    def change() -> None:
        try:
            div.text = "from a thread"
        except DocumentAccessError as exc:
            errors.append(exc)

    await asyncio.to_thread(change)
    await session.settle()
    assert len(errors) == 1
    message = str(errors[0])
    assert "Div" in message and ".text" in message and "add_next_tick_callback" in message
    assert session.model("div").text == "start", "no partial patch reached the client"

    session.server_session.document.add_next_tick_callback(lambda: setattr(div, "text", "ok"))
    await session.settle()
    assert session.model("div").text == "ok", "the session keeps working"


async def test_a_change_from_an_unlocked_callback_fails_loudly(
    client: AppTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    session = await client.open_session()
    div = server_div(session)

    @without_document_lock
    async def unlocked() -> None:
        div.text = "unlocked"

    session.server_session.document.add_next_tick_callback(unlocked)
    with caplog.at_level(logging.ERROR, "app_server"):
        await session.settle()
    assert "add_next_tick_callback" in caplog.text
    assert session.id in caplog.text
    assert session.model("div").text == "start"


async def test_unlocked_callbacks_run_off_the_lock_plain_ones_on_the_executor(
    client: AppTestClient,
) -> None:
    session = await client.open_session()
    server = session.server_session
    seen: dict[str, object] = {}

    @without_document_lock
    def plain() -> None:
        seen["plain_thread"] = threading.current_thread().name
        seen["plain_locked"] = server.lock.locked()

    @without_document_lock
    async def coroutine() -> None:
        seen["coroutine_thread"] = threading.current_thread().name
        seen["coroutine_locked"] = server.lock.locked()
        seen["curdoc"] = type(curdoc()).__name__

    server.document.add_next_tick_callback(plain)
    server.document.add_next_tick_callback(coroutine)
    await session.settle()
    assert str(seen["plain_thread"]).startswith("app_server")
    assert seen["coroutine_thread"] == threading.current_thread().name
    assert seen["plain_locked"] is False and seen["coroutine_locked"] is False
    assert seen["curdoc"] == "UnlockedDocumentProxy"


async def test_an_unlocked_callback_updates_through_next_tick(client: AppTestClient) -> None:
    session = await client.open_session()
    doc, div = session.server_session.document, server_div(session)

    def locked_update(text: str) -> None:
        div.text = text

    @without_document_lock
    async def unlocked() -> None:
        result = await asyncio.to_thread(lambda: "computed off the loop")
        curdoc().add_next_tick_callback(partial(locked_update, result))

    doc.add_next_tick_callback(unlocked)
    await session.wait_for(lambda: session.model("div").text == "computed off the loop")


async def test_curdoc_is_the_sessions_document_throughout_a_coroutine_callback(
    client: AppTestClient,
) -> None:
    first, second = await client.open_session(), await client.open_session()
    seen: list[bool] = []

    def make(doc: Document):  # type: ignore[no-untyped-def]
        async def callback() -> None:
            for _ in range(5):
                seen.append(curdoc() is doc)
                await asyncio.sleep(0.001)

        return callback

    for session in (first, second):
        doc = session.server_session.document
        doc.add_next_tick_callback(make(doc))
    await first.settle()
    await second.settle()
    assert seen == [True] * 10


async def test_a_failing_callback_is_logged_and_the_periodic_one_keeps_running(
    client: AppTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    session = await client.open_session()
    doc, div = session.server_session.document, server_div(session)
    runs = 0

    def failing() -> None:
        nonlocal runs
        runs += 1
        div.text = f"run {runs}"
        raise RuntimeError("the app's bug")

    with caplog.at_level(logging.ERROR, "app_server"):
        periodic = doc.add_periodic_callback(failing, 10)
        await session.wait_for(lambda: runs >= 3)
    assert "the app's bug" in caplog.text and session.id in caplog.text
    doc.remove_periodic_callback(periodic)  # so that it cannot overwrite the change below
    await session.set("div", "text", "still alive")
    assert server_div(session).text == "still alive"


async def test_periodic_callbacks_of_many_sessions_run_together(client: AppTestClient) -> None:
    """Runs fall on a shared grid, so N sessions cost one wake-up of the loop, not N."""
    loop = asyncio.get_running_loop()
    first, second = await client.open_session(), await client.open_session()
    runs: dict[str, list[float]] = {"first": [], "second": []}
    added: dict[str, float] = {}
    for name, session in (("first", first), ("second", second)):
        added[name] = loop.time()
        session.server_session.document.add_periodic_callback(
            partial(lambda n: runs[n].append(loop.time()), name), 50
        )
        await asyncio.sleep(0.025)  # the second is added half a period after the first
    await first.wait_for(lambda: len(runs["first"]) >= 4 and len(runs["second"]) >= 4)
    for name, times in runs.items():
        assert times[0] >= added[name] + 0.05 - 0.002  # never before one period
    # each run of the second comes with a run of the first (without the grid: 25 ms apart)
    offsets = [min(abs(a - b) for a in runs["first"]) for b in runs["second"][:3]]
    assert max(offsets) < 0.010, (runs, offsets)


async def test_removing_one_of_the_callbacks_due_together_leaves_the_others_running(
    client: AppTestClient,
) -> None:
    """Callbacks due at the same instant share one timer; removing one cancels only its own."""
    sessions = [await client.open_session() for _ in range(3)]
    runs = [0, 0, 0]

    def count(n: int) -> None:
        runs[n] += 1

    periodics = [
        session.server_session.document.add_periodic_callback(partial(count, n), 50)
        for n, session in enumerate(sessions)
    ]
    await sessions[0].wait_for(lambda: min(runs) >= 1)
    sessions[1].server_session.document.remove_periodic_callback(periodics[1])
    await asyncio.sleep(0.01)  # removed while the three wait for the same instant
    removed_at = runs[1]
    await sessions[0].wait_for(lambda: runs[0] >= removed_at + 3 and runs[2] >= removed_at + 3)
    assert runs[1] == removed_at


async def test_other_work_gets_the_loop_between_batches_of_runs_due_together(
    client: AppTestClient,
) -> None:
    """Runs due at the same instant go a batch at a time, so that 40 sessions streaming at
    once do not hold the loop (and every other session's requests) for all 40 runs."""
    loop = asyncio.get_running_loop()
    sessions = [await client.open_session() for _ in range(40)]
    order: list[str] = []

    def run(n: int) -> None:
        if not order:
            loop.call_soon(order.append, "other work")
        order.append(f"run {n}")

    for n, session in enumerate(sessions):  # in one pass of the loop: all due together
        session.server_session.document.add_periodic_callback(partial(run, n), 50)
    await sessions[0].wait_for(lambda: len(order) >= 41)
    assert order.index("other work") < 40, order


async def test_callbacks_of_a_discarded_session_never_run(client: AppTestClient) -> None:
    session = await client.open_session()
    doc = session.server_session.document
    ran: list[str] = []
    doc.add_timeout_callback(lambda: ran.append("timeout"), 50)
    doc.add_periodic_callback(lambda: ran.append("periodic"), 20)
    await client.close_session(session)
    await asyncio.sleep(0.15)
    assert ran == []
    with pytest.raises(RuntimeError, match="destroyed"):
        doc.add_next_tick_callback(lambda: ran.append("late"))


async def test_removing_a_callback_twice_is_a_clear_error(client: AppTestClient) -> None:
    session = await client.open_session()
    doc = session.server_session.document
    ran: list[int] = []
    callback = doc.add_timeout_callback(lambda: ran.append(1), 30)
    doc.remove_timeout_callback(callback)
    with pytest.raises(ValueError, match="already"):
        doc.remove_timeout_callback(callback)
    await asyncio.sleep(0.08)
    assert ran == []

    ticked = doc.add_next_tick_callback(lambda: ran.append(2))
    await session.settle()
    assert ran == [2]
    with pytest.raises(ValueError, match="already ran"):
        doc.remove_next_tick_callback(ticked)
