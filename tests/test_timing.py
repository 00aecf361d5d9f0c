"""A callback that holds the event loop is named in the log and counted; the loop's lag is
measured all the time; the callback-duration histogram counts the handlers the server runs.

The app's handlers sleep 0.3 s with the threshold at 100 ms: over it however slow the machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app_server import protocol
from app_server.metrics import Metrics
from app_server.testing import AppTestClient
from app_server.timing import LoopLagProbe, callback_name
from tests.conftest import EXAMPLES
from tests.servers import run_app_server
from tests.wsclient import BokehSocket, fetch_token

APP = Path(__file__).parent / "apps" / "slow_callbacks.py"


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = text.decode() if isinstance(text, bytes) else text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app_server.timing" and r.levelname == "WARNING"]


async def test_an_on_change_handler_that_blocks_the_loop_is_named_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "app_server.timing")
    async with AppTestClient(APP) as client:
        session = await client.open_session()
        await session.set("slider", "value", 3)
        metrics = samples(client.server.render_metrics())
    [record] = slow_records(caplog)
    assert record.app == "/app"  # type: ignore[attr-defined]
    assert record.session_id == session.id  # type: ignore[attr-defined]
    assert record.callback.startswith("slow_update (slow_callbacks.py:")  # type: ignore[attr-defined]
    assert record.held_seconds >= 0.3  # type: ignore[attr-defined]
    message = record.getMessage()
    assert f"app /app, session {session.id}: the on_change handler of Slider.value" in message
    assert metrics[("app_server_slow_callbacks_total", (("app", "/app"),))] == 1


async def test_the_handler_that_held_the_loop_is_named_not_the_callback_that_ran_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "app_server.timing")
    async with AppTestClient(APP) as client:
        session = await client.open_session()
        await session.click("nudge")  # its handler sets the slider: slow_update runs inside it
    [record] = slow_records(caplog)
    assert "slow_update" in record.callback  # type: ignore[attr-defined]
    assert "nudge" not in record.getMessage()


async def test_a_periodic_callback_that_blocks_the_loop_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "app_server.timing")
    async with AppTestClient(APP) as client:
        session = await client.open_session()
        await session.set("status", "tags", ["slow"])
        await session.run_periodic_callbacks()
    [record] = slow_records(caplog)
    assert record.callback.startswith("slow_tick (slow_callbacks.py:")  # type: ignore[attr-defined]
    assert "the periodic callback slow_tick" in record.getMessage()


async def test_a_zero_threshold_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "app_server.timing")
    async with AppTestClient(APP, slow_callback_threshold=0) as client:
        session = await client.open_session()
        await session.set("slider", "value", 3)
        metrics = samples(client.server.render_metrics())
    assert slow_records(caplog) == []
    assert metrics.get(("app_server_slow_callbacks_total", (("app", "/app"),)), 0) == 0


async def test_callback_durations_count_the_handlers_a_change_ran() -> None:
    """The histogram stayed at 0 after a slider's and a button's handlers ran: it timed only
    periodic, timeout and next-tick callbacks, and handlers run inside an incoming PATCH-DOC."""
    async with AppTestClient(EXAMPLES / "demo.py") as client:
        session = await client.open_session()
        await session.set("frequency", "value", 2.5)  # update(attr, old, new)
        await session.click("reset")  # reset(), which sets the slider: update again
        metrics = samples(client.server.render_metrics())
    assert metrics[("app_server_callback_duration_seconds_count", ())] == 3
    assert metrics[("app_server_callback_duration_seconds_sum", ())] > 0


async def test_the_probe_measures_how_long_the_loop_was_held() -> None:
    metrics = Metrics()
    probe = LoopLagProbe(metrics, threshold=0.1, interval=0.05)
    probe.start()
    await asyncio.sleep(0.1)
    time.sleep(0.3)  # the loop is held: the probe wakes at least 0.25 s late
    await asyncio.sleep(0.1)
    probe.stop()
    lag = {
        labels: value
        for (name, labels), value in samples(metrics.render({}, 0)).items()
        if name == "app_server_event_loop_lag_seconds_bucket"
    }
    under = {dict(labels)["le"]: value for labels, value in lag.items()}
    assert under["+Inf"] > under["0.25"], "no wake-up was seen 0.25 s late"


def test_callbacks_are_named_by_qualified_name_and_place() -> None:
    class Dashboard:
        def refresh(self) -> None: ...

    name = callback_name(Dashboard().refresh)
    assert name.startswith("tests.test_timing.")
    assert "Dashboard.refresh (test_timing.py:" in name


def test_a_real_server_logs_the_slow_callback_and_counts_it() -> None:
    with run_app_server(APP, args=["--slow-callback-threshold", "100"]) as server:
        token = fetch_token(server.url + "/slow_callbacks?slow_start=1")

        async def open_and_wait() -> None:
            ws_url = server.url.replace("http", "ws") + "/slow_callbacks/ws"
            async with await BokehSocket.open(ws_url, token) as socket:
                await socket.receive_type(protocol.ACK)
                await socket.request(protocol.PULL_DOC_REQ)
                await asyncio.to_thread(server.wait_for_log, "slow_start (slow_callbacks.py:")

        asyncio.run(open_and_wait())
        text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read()
        log = server.log()
    line = next(line for line in log.splitlines() if "slow_start (slow_callbacks.py:" in line)
    assert "WARNING" in line and "the timeout callback" in line and "/slow_callbacks" in line
    key = ("app_server_slow_callbacks_total", (("app", "/slow_callbacks"),))
    assert samples(text)[key] == 1
