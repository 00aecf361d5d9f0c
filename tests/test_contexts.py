"""The session and server contexts apps see, with the members Bokeh documents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.io import curdoc
from bokeh.models import Column, Div

from app_server import contexts
from app_server.contexts import AppServerContext
from app_server.testing import AppTestClient
from tests.conftest import EXAMPLES

seen: dict[str, Any] = {}


def record_context(doc: Document) -> None:
    context = curdoc().session_context
    seen["context"] = context
    doc.add_root(Div(text="ready", name="div"))


@pytest.fixture
async def client() -> AsyncIterator[AppTestClient]:
    seen.clear()
    async with AppTestClient(record_context) as client:
        yield client


async def test_the_session_context_knows_its_session(client: AppTestClient) -> None:
    session = await client.open_session(arguments={"N": "10"})
    context = seen["context"]
    assert context.id == session.id
    assert context.request.arguments == {"N": [b"10"]}
    assert context.token_payload["arguments"] == {"N": [b"10"]}
    assert isinstance(context.server_context, AppServerContext)
    assert context.logout_url is None
    assert context.destroyed is False
    await client.close_session(session)
    assert context.destroyed is True


async def test_headers_keep_the_spelling_bokeh_gives_them(client: AppTestClient) -> None:
    await client.open_session(headers={"x-custom-header": "yes", "Cookie": "flavour=mint"})
    request = seen["context"].request
    assert request.headers["X-Custom-Header"] == "yes"
    assert request.cookies == {"flavour": "mint"}
    with pytest.raises(AttributeError, match="offers arguments, cookies, headers"):
        _ = request.body


async def test_headers_and_cookies_are_filtered_by_the_settings() -> None:
    options = {"exclude_headers": ["X-Secret"], "include_cookies": ["keep"]}
    async with AppTestClient(record_context, **options) as client:
        headers = {"X-Secret": "s", "X-Public": "p", "Cookie": "keep=1; drop=2"}
        await client.open_session(headers=headers)
    request = seen["context"].request
    assert "X-Secret" not in request.headers and request.headers["X-Public"] == "p"
    assert request.cookies == {"keep": "1"}


async def test_with_locked_document_changes_the_document_under_the_lock(
    client: AppTestClient,
) -> None:
    session = await client.open_session()
    context = seen["context"]
    held: list[bool] = []

    def change(doc: Document) -> None:
        held.append(session.server_session.lock.locked())
        doc.select_one({"name": "div"}).text = "changed under the lock"

    await context.with_locked_document(change)
    await session.settle()
    assert held == [True]
    assert session.model("div").text == "changed under the lock"


async def test_server_wide_callbacks_run_until_removed(client: AppTestClient) -> None:
    await client.open_session()
    server_context = seen["context"].server_context
    runs = {"tick": 0, "timeout": 0, "periodic": 0}

    def bump(key: str):  # type: ignore[no-untyped-def]
        return lambda: runs.__setitem__(key, runs[key] + 1)

    server_context.add_next_tick_callback(bump("tick"))
    server_context.add_timeout_callback(bump("timeout"), 20)
    periodic = server_context.add_periodic_callback(bump("periodic"), 10)
    removed = server_context.add_timeout_callback(bump("never"), 10)
    server_context.remove_timeout_callback(removed)
    await asyncio.sleep(0.1)
    server_context.remove_periodic_callback(periodic)
    count = runs["periodic"]
    await asyncio.sleep(0.05)
    assert runs["tick"] == 1 and runs["timeout"] == 1
    assert count >= 3 and runs["periodic"] == count, "stops once removed"
    assert "never" not in runs
    with pytest.raises(ValueError, match="already ran"):
        server_context.remove_periodic_callback(periodic)


async def test_a_server_callback_can_update_every_session(client: AppTestClient) -> None:
    first, second = await client.open_session(), await client.open_session()
    server_context = seen["context"].server_context
    assert {s.id for s in server_context.sessions} == {first.id, second.id}

    async def broadcast() -> None:
        for context in server_context.sessions:

            def update(doc: Document) -> None:
                doc.select_one({"name": "div"}).text = "broadcast"

            await context.with_locked_document(update)

    server_context.add_next_tick_callback(broadcast)
    await first.wait_for(lambda: first.model("div").text == second.model("div").text == "broadcast")


async def test_async_lifecycle_hooks_are_awaited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("LIFECYCLE_LOG", str(log))
    async with AppTestClient(EXAMPLES / "lifecycle_app") as client:
        session = await client.open_session()
        # on_session_created is a coroutine in that app (Bokeh never awaits it)
        assert log.read_text().splitlines() == ["server_loaded", f"session_created {session.id}"]
        await client.close_session(session)
    assert log.read_text().splitlines()[2:] == [
        f"session_destroyed {session.id}",
        "server_unloaded",
    ]


def empty_layout(doc: Document) -> None:
    doc.add_root(Column())  # Bokeh's check warns: W-1002 (EMPTY_LAYOUT)


async def test_bokehs_checks_run_on_an_apps_first_document_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def warnings() -> int:
        return sum("EMPTY_LAYOUT" in record.getMessage() for record in caplog.records)

    async with AppTestClient(empty_layout) as client:
        with caplog.at_level(logging.WARNING):
            await client.open_session()
            await client.open_session()
            assert warnings() == 1
            monkeypatch.setattr(contexts, "VALIDATION_INTERVAL", 0.0)
            await client.open_session()
            assert warnings() == 2


async def test_the_sessions_of_each_client_address_are_counted_as_they_come_and_go(
    client: AppTestClient,
) -> None:
    first = await client.open_session()
    await client.open_session()
    assert client.context.holdings(None, "127.0.0.1").client_sessions == 2
    assert client.context.holdings(None, "10.0.0.9").client_sessions == 0
    await client.close_session(first)
    assert client.context.holdings(None, "127.0.0.1").client_sessions == 1
