"""Health, readiness and Prometheus metrics, checked after real traffic."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app_server import create_app, protocol
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server
from tests.wsclient import BokehSocket, fetch_token


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    args = ["--disconnected-session-lifetime", "200", "--unused-session-lifetime", "60000"]
    env = {"LIFECYCLE_LOG": str(tmp_path / "hooks.log")}
    with run_app_server(EXAMPLES / "lifecycle_app", args=args, env=env) as server:
        yield server


def test_liveness_and_readiness() -> None:
    app = create_app({"/hello": lambda doc: None})
    client = TestClient(app)
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").status_code == 200, "a mounted app starts on its first request"
    with client:  # the lifespan has run on_server_loaded
        assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 503, "not ready once shut down"


async def test_metrics_count_what_happened(server: RunningServer, tmp_path: Path) -> None:
    before = scrape(server)
    app = (("app", "/lifecycle_app"),)
    assert before[("app_server_sessions_created_total", app)] == 0

    token = fetch_token(server.url + "/lifecycle_app")
    ws_url = server.url.replace("http", "ws") + "/lifecycle_app/ws"
    async with await BokehSocket.open(ws_url, token) as socket:
        await socket.receive_type(protocol.ACK)
        await socket.request(protocol.PULL_DOC_REQ)
        await socket.request(protocol.SERVER_INFO_REQ)
        during = scrape(server)
        assert during[("app_server_sessions_open", app)] == 1
        assert during[("app_server_websockets_open", ())] == 1
        assert during[("app_server_messages_total", (("direction", "in"),))] == 2
        # ACK, PULL-DOC-REPLY, SERVER-INFO-REPLY
        assert during[("app_server_messages_total", (("direction", "out"),))] == 3
        assert during[("app_server_bytes_total", (("direction", "out"),))] > 1000

    hooks = tmp_path / "hooks.log"
    deadline = time.monotonic() + 5
    while "session_destroyed" not in (hooks.read_text() if hooks.exists() else ""):
        assert time.monotonic() < deadline, "the closed tab's session was not released promptly"
        time.sleep(0.05)
    after = scrape(server)
    assert after[("app_server_sessions_created_total", app)] == 1
    assert after[("app_server_sessions_destroyed_total", app)] == 1
    assert after[("app_server_sessions_open", app)] == 0
    assert after[("app_server_websockets_open", ())] == 0
    assert after[("app_server_websockets_opened_total", ())] == 1


async def test_refused_websockets_are_counted(server: RunningServer) -> None:
    from websockets.exceptions import InvalidStatus

    ws_url = server.url.replace("http", "ws") + "/lifecycle_app/ws"
    with pytest.raises(InvalidStatus):
        await BokehSocket.open(ws_url, "bogus")
    assert scrape(server)[("app_server_websockets_refused_total", ())] == 1


def test_callback_durations_and_errors_are_exported() -> None:
    from app_server.metrics import Metrics

    metrics = Metrics()
    metrics.observe_callback(0.002)
    metrics.observe_callback(2.0)
    metrics.callback_errors += 1
    families = {f.name: f for f in text_string_to_metric_families(metrics.render({}, 0))}
    histogram = families["app_server_callback_duration_seconds"]
    values = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}
    assert values[("app_server_callback_duration_seconds_bucket", "0.005")] == 1
    assert values[("app_server_callback_duration_seconds_bucket", "+Inf")] == 2
    assert values[("app_server_callback_duration_seconds_count", None)] == 2
    assert families["app_server_callback_errors"].samples[0].value == 1
