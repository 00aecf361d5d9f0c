"""Servers for the client tests: one app_server and one ``bokeh serve``, each hosting the
demo and the client test apps, started once for the whole directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import EXAMPLES, TEST_APPS
from tests.servers import run_app_server, run_bokeh_serve

APPS = (EXAMPLES / "demo.py", TEST_APPS / "client_data.py", TEST_APPS / "client_ticker.py")


@dataclass(frozen=True)
class Apps:
    """The http URLs of the apps on one server; ``kind`` is "app_server" or "bokeh"."""

    kind: str
    base: str

    def url(self, app: str) -> str:
        return f"{self.base}/{app}"


@pytest.fixture(scope="package")
def app_server_apps() -> Iterator[Apps]:
    with run_app_server(*APPS) as server:
        yield Apps("app_server", server.url)


@pytest.fixture(scope="package")
def bokeh_apps() -> Iterator[Apps]:
    with run_bokeh_serve(*APPS) as server:
        yield Apps("bokeh", server.url)


@pytest.fixture(params=["app_server", "bokeh"])
def apps(request: pytest.FixtureRequest) -> Apps:
    """Each server in turn, for the tests that must pass against both."""
    name = "app_server_apps" if request.param == "app_server" else "bokeh_apps"
    return request.getfixturevalue(name)


@pytest.fixture(autouse=True)
def unique_model_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models made in this process get random ids: Bokeh's default sequential ids (p1000,
    p1001, ...) would collide with the ids of the server's models in the same document."""
    monkeypatch.setenv("BOKEH_SIMPLE_IDS", "no")
