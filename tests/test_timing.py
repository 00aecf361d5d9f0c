"""The callback-duration histogram counts the handlers the server runs; the loop's lag is
measured; callbacks are named by their qualified name and place."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from app_server.metrics import Metrics
from app_server.testing import AppTestClient
from app_server.timing import LoopLagProbe, callback_name
from tests.conftest import EXAMPLES


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = text.decode() if isinstance(text, bytes) else text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


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
