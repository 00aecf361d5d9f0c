"""Testing a Bokeh app with app_server.testing: no browser, no socket, the real server paths.

Run it with `pytest examples/test_demo_app.py` (pytest-asyncio runs the async tests).
"""

from pathlib import Path

import pytest

from app_server.testing import AppTestClient

DEMO = Path(__file__).parent / "demo.py"


@pytest.fixture
async def client():
    async with AppTestClient(DEMO) as client:  # runs the app's lifecycle hooks
        yield client


async def test_the_slider_changes_the_status(client):
    session = await client.open_session()
    assert session.model("status").text == "frequency = 1.0, resets: 0"

    await session.set("frequency", "value", 2.5)  # as if a user dragged the slider

    assert session.model("status").text == "frequency = 2.5, resets: 0"


async def test_reset_puts_the_slider_back(client):
    session = await client.open_session()
    await session.set("frequency", "value", 4.0)

    await session.click("reset")  # a ButtonClick event, as BokehJS sends it

    assert session.model("frequency").value == 1.0
    assert session.model("status").text == "frequency = 1.0, resets: 1"


async def test_sessions_are_independent(client):
    first, second = await client.open_session(), await client.open_session()
    await first.set("frequency", "value", 3.0)
    assert second.model("frequency").value == 1.0
