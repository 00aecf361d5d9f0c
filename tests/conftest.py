from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RunningServer, run_app_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TEST_APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="session")
def demo_server() -> Iterator[RunningServer]:
    """``app-server serve examples/demo.py`` on a loopback port, shared by the session's tests."""
    with run_app_server(EXAMPLES / "demo.py") as server:
        yield server
