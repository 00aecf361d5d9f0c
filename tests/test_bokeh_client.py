"""Bokeh's own Python client (bokeh.client) works against app_server unchanged."""

from __future__ import annotations

import time

import pytest
from bokeh.client import pull_session, push_session
from bokeh.document import Document
from bokeh.models import Div

from tests.servers import RunningServer

# bokeh.client runs Tornado's IOLoop, which asks asyncio for the current loop where none is set
# (Python 3.12 warns); when other tests ran first in the process, one is set and nothing warns
pytestmark = pytest.mark.filterwarnings("ignore:There is no current event loop:DeprecationWarning")


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_pull_session_gets_the_document(demo_server: RunningServer) -> None:
    with pull_session(url=demo_server.url + "/demo") as session:
        assert session.document.title == "app_server demo"
        assert session.document.select_one({"name": "frequency"}).value == 1.0


def test_a_property_changed_by_the_client_runs_the_server_callback(
    demo_server: RunningServer,
) -> None:
    url = demo_server.url + "/demo"
    with pull_session(url=url) as session:
        session.document.select_one({"name": "frequency"}).value = 4.0
        session.force_roundtrip()

        def server_saw_it() -> bool:
            with pull_session(session_id=session.id, url=url) as observer:
                return observer.document.select_one({"name": "status"}).text == (
                    "frequency = 4.0, resets: 0"
                )

        wait_for(server_saw_it)


def test_push_session_then_pull_session_returns_the_pushed_document(
    demo_server: RunningServer,
) -> None:
    url = demo_server.url + "/demo"
    document = Document()
    document.add_root(Div(text="pushed from a client", name="pushed"))
    with push_session(document, session_id="pushed-session", url=url):
        with pull_session(session_id="pushed-session", url=url) as pulled:
            assert pulled.document.select_one({"name": "pushed"}).text == "pushed from a client"


def test_request_server_info(demo_server: RunningServer) -> None:
    import bokeh

    with pull_session(url=demo_server.url + "/demo") as session:
        assert session.request_server_info()["version_info"]["bokeh"] == bokeh.__version__
