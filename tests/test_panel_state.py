"""Panel's ``pn.state`` over an app_server session, in-process (tests/test_panel.py has Chromium).

Panel reads Bokeh's server objects through ``curdoc().session_context``: the application's URL,
the request's arguments, the sessions whose expiration it blocks, and (app_server/_panel.py)
whether the page has loaded.

Importing Panel puts its models in Bokeh's process-wide registry, after which every page a test
renders would load Panel's bundle: each check runs in a child process, and this module never
imports Panel itself.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from app_server.testing import AppTestClient
from tests.conftest import ROOT, TEST_APPS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("panel") is None, reason="needs panel")


def run_in_child(check: str) -> None:
    code = f"import asyncio\nfrom tests.test_panel_state import {check}\nasyncio.run({check}())"
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def pn_state_reads_the_session() -> None:
    import panel as pn
    from panel.io.state import set_curdoc

    async with AppTestClient(TEST_APPS / "panel_widgets.py") as client:
        session = await client.open_session(arguments={"x": "1"})
        server_session = session.server_session
        with set_curdoc(server_session.document):
            assert pn.state.app_url == "/" + server_session.app_name.strip("/")
            assert pn.state.session_args == {"x": [b"1"]}
            pn.state.block_expiration()
            assert server_session.expiration_blocked
            pn.state.unblock_expiration()
            assert not server_session.expiration_blocked


async def onload_runs_when_the_page_is_ready() -> None:
    from bokeh.events import DocumentReady

    async with AppTestClient(TEST_APPS / "panel_periodic.py") as client:
        session = await client.open_session()
        document = session.server_session.document
        status = next(m for m in document.models if "loading" in str(getattr(m, "text", "")))
        async with session.server_session.locked():  # as BokehJS sends it once it has rendered
            document.callbacks.trigger_event(DocumentReady())
        assert "loaded" in status.text
        ticks = next(m for m in document.models if getattr(m, "title", None) == "Ticks")
        assert ticks.value == 0
        await session.run_periodic_callbacks()  # the ticker onload started
        assert ticks.value == 1
        await session.flush()
        client_ticks = session.document.get_model_by_id(ticks.id)
        assert client_ticks is not None and client_ticks.value == 1


def test_pn_state_reads_the_session() -> None:
    run_in_child("pn_state_reads_the_session")


def test_onload_runs_when_the_page_is_ready() -> None:
    run_in_child("onload_runs_when_the_page_is_ready")
