"""/metrics with prometheus_client: one server's own registry in a process, every worker's
values summed under ``--num-procs`` and gunicorn, process and build figures, and who may read it.

The multi-worker checks open sessions with tokens made here (unsigned ids, or signed with the
workers' shared key), so no page runs app code: each session is one websocket, wherever the
kernel hands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from bokeh.util.token import generate_jwt_token, generate_secret_key, generate_session_id
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app_server import create_app, protocol
from app_server.metrics import Metrics
from tests.conftest import ROOT, TEST_APPS
from tests.servers import RunningServer, _run, free_port, run_app_server
from tests.wsclient import BokehSocket

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PID_APP = TEST_APPS / "pid_app.py"
AUTH = {"auth_module": str(TEST_APPS / "auth_module.py"), "cookie_secret": "test-cookie-secret"}


def parse(text: str | bytes) -> Samples:
    text = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: RunningServer) -> Samples:
    return parse(urllib.request.urlopen(server.url + "/metrics", timeout=10).read())


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def pids(samples: Samples, name: str) -> set[str]:
    return {dict(labels)["pid"] for (sample, labels) in samples if sample == name}


def hello(doc: object) -> None:
    pass


def test_one_server_reports_its_process_and_versions() -> None:
    import bokeh

    with TestClient(create_app({"/hello": hello})) as client:
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = parse(response.text)
    [(_, build)] = [key for key in samples if key[0] == "app_server_build_info"]
    assert dict(build)["bokeh"] == bokeh.__version__
    assert dict(build)["python"] == ".".join(map(str, sys.version_info[:3]))
    pid = (("pid", str(os.getpid())),)
    assert samples[("process_resident_memory_bytes", pid)] > 10_000_000
    assert samples[("process_open_fds", pid)] > 0
    assert samples[("process_cpu_seconds_total", pid)] > 0
    assert 0 < time.time() - samples[("process_start_time_seconds", pid)] < 24 * 3600
    assert ("app_server_sessions_created_total", (("app", "/hello"),)) in samples


def test_two_apps_in_one_process_count_apart() -> None:
    with (
        TestClient(create_app({"/a": hello})) as a,
        TestClient(create_app({"/b": hello})) as b,
    ):
        a.get("/a")  # the app's first page creates its session
        one, two = parse(a.get("/metrics").text), parse(b.get("/metrics").text)
    assert one[("app_server_sessions_created_total", (("app", "/a"),))] == 1
    assert ("app_server_sessions_created_total", (("app", "/a"),)) not in two
    assert two[("app_server_sessions_created_total", (("app", "/b"),))] == 0


def test_a_scrape_syncs_counters_and_they_never_go_back() -> None:
    metrics = Metrics()
    metrics.messages_in += 3
    first = parse(metrics.render({"/a": 1}, 0))
    metrics.messages_in += 2
    second = parse(metrics.render({"/a": 0}, 0))
    key = ("app_server_messages_total", (("direction", "in"),))
    assert (first[key], second[key]) == (3, 5)
    assert second[("app_server_sessions_open", (("app", "/a"),))] == 0


@contextlib.asynccontextmanager
async def sessions_over_workers(
    ws_url: str, least: int, workers: int, secret_key: str | None = None
) -> Any:
    """Websockets open to sessions of ``ws_url``, at least ``least`` and on ``workers`` worker
    processes (more are opened, within a bound, until the kernel has handed them to each)."""
    signed = secret_key is not None
    async with contextlib.AsyncExitStack() as stack:
        sockets: list[BokehSocket] = []
        seen: dict[str, int] = {}
        while len(sockets) < least or len(seen) < workers:
            assert len(sockets) < 60, f"the sessions all went to {sorted(seen)}"
            session_id = generate_session_id(secret_key=secret_key, signed=signed)
            token = generate_jwt_token(session_id, secret_key=secret_key, signed=signed)
            socket = await stack.enter_async_context(await BokehSocket.open(ws_url, token))
            await socket.receive_type(protocol.ACK)
            doc = (await socket.request(protocol.PULL_DOC_REQ)).content["doc"]
            pid = doc["roots"][0]["attributes"]["text"]
            seen[pid] = seen.get(pid, 0) + 1
            sockets.append(socket)
        yield sockets, seen


def wait_for_workers(server: RunningServer, count: int) -> None:
    """Until ``count`` workers have started serving (the first one answers before the others)."""
    deadline = time.monotonic() + 60
    while server.log().count("Application startup complete") < count:
        assert time.monotonic() < deadline, f"{count} workers did not start:\n{server.log()}"
        time.sleep(0.1)


async def wait_for(server: RunningServer, name: str, value: float) -> Samples:
    """A scrape whose ``name`` sums to ``value`` (other workers hand over their counts twice
    a second)."""
    deadline = time.monotonic() + 10
    while True:
        samples = await asyncio.to_thread(scrape, server)
        if total(samples, name) == value:
            return samples
        assert time.monotonic() < deadline, f"{name} is {total(samples, name)}, not {value}"
        await asyncio.sleep(0.1)


COUNTERS = (
    "app_server_sessions_created_total",
    "app_server_websockets_opened_total",
    "app_server_messages_total",
    "app_server_bytes_total",
    "process_cpu_seconds_total",
)


async def test_one_scrape_reports_every_worker_of_num_procs() -> None:
    with run_app_server(PID_APP, args=["--num-procs", "2"]) as server:
        wait_for_workers(server, 2)
        ws_url = server.url.replace("http", "ws") + "/pid_app/ws"
        async with sessions_over_workers(ws_url, least=10, workers=2) as (sockets, seen):
            n = len(sockets)
            await wait_for(server, "app_server_sessions_open", n)
            deadline = time.monotonic() + 10  # each worker's probe wakes every half second
            while pids(scrape(server), "app_server_event_loop_lag_seconds_count") != set(seen):
                assert time.monotonic() < deadline, "a worker's event-loop lag is missing"
                await asyncio.sleep(0.2)
            previous: Samples = {}
            for round_ in range(6):  # whichever worker answers, the service's figures
                await sockets[round_ % n].request(protocol.SERVER_INFO_REQ)
                samples = await asyncio.to_thread(scrape, server)
                assert total(samples, "app_server_sessions_open") == n
                assert total(samples, "app_server_sessions_created_total") == n
                assert total(samples, "app_server_websockets_open") == n
                assert pids(samples, "process_resident_memory_bytes") == set(seen)
                for key, value in samples.items():
                    if key[0] in COUNTERS and key in previous:
                        assert value >= previous[key], f"{key} went back"
                previous = samples
                await asyncio.sleep(0.3)

            # a worker dies: its counters stay in the sums, its sessions and memory leave them
            victim, survivor = sorted(seen, key=lambda pid: seen[pid])
            os.kill(int(victim), signal.SIGKILL)
            await wait_for(server, "app_server_sessions_open", seen[survivor])
            samples = await asyncio.to_thread(scrape, server)
            assert total(samples, "app_server_sessions_created_total") == n
            for key, value in previous.items():
                if key[0] in COUNTERS:
                    assert samples.get(key, 0) >= value, f"{key} went back when a worker died"
            assert victim not in pids(samples, "process_resident_memory_bytes")
    match = re.search(r"metrics are summed in (\S+)", server.log())
    assert match, "the workers' directory is not logged"
    assert not Path(match.group(1)).exists(), "the private directory outlived the server"


async def test_gunicorn_workers_add_up_in_the_operators_directory(tmp_path: Path) -> None:
    port, key = free_port(), generate_secret_key()
    command = [
        *(sys.executable, "-m", "gunicorn", "tests.apps.pid_asgi:app"),
        *("--chdir", str(ROOT), "--bind", f"127.0.0.1:{port}", "--workers", "2"),
        *("--worker-class", "uvicorn_worker.UvicornWorker", "--graceful-timeout", "5"),
    ]
    env = {
        "BOKEH_SECRET_KEY": key,
        "BOKEH_SIGN_SESSIONS": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    with _run(command, port, env, "") as server:
        wait_for_workers(server, 2)
        ws_url = f"ws://127.0.0.1:{port}/pid_app/ws"
        async with sessions_over_workers(ws_url, 4, 2, secret_key=key) as (sockets, seen):
            samples = await wait_for(server, "app_server_sessions_created_total", len(sockets))
            assert pids(samples, "process_resident_memory_bytes") == set(seen)
    assert any(tmp_path.glob("counter_*.db")), "the values were not kept in the directory"


# -- who may read /metrics ----------------------------------------------------------------


def test_metrics_are_public_by_default_even_with_an_auth_module() -> None:
    with TestClient(create_app({"/hello": hello}, **AUTH)) as client:
        assert client.get("/metrics").status_code == 200


def test_with_metrics_authenticated_an_anonymous_scrape_is_refused() -> None:
    app = create_app({"/hello": hello}, metrics="authenticated", **AUTH)
    with TestClient(app, follow_redirects=False) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 403
        assert "--metrics authenticated" in refused.text
        assert "/hello" not in refused.text
        client.post("/login", content=b"name=prometheus")
        allowed = client.get("/metrics")
    assert allowed.status_code == 200
    assert 'app="/hello"' in allowed.text


def test_metrics_off_serves_nothing() -> None:
    with TestClient(create_app({"/hello": hello}, metrics="off")) as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert "app_server" not in response.text


def test_the_option_is_on_the_command_line() -> None:
    with run_app_server(PID_APP, args=["--metrics", "off"]) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
    refused.value.close()
    assert refused.value.code == 404
