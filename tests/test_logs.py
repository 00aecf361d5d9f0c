"""app_server's log lines under any host: uvicorn's and gunicorn's own configuration, and JSON
lines from every process of ``app-server serve --num-procs``."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.servers import _run, free_port, run_app_server
from tests.wsclient import fetch_token

STARTED = "app_server started: /demo, /lifecycle_app"


def uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "examples.asgi_app:app", "--port", str(port)]


def gunicorn(port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "gunicorn", "examples.asgi_app:app", "--chdir", str(ROOT)),
        *("--bind", f"127.0.0.1:{port}", "--worker-class", "uvicorn_worker.UvicornWorker"),
    ]


@pytest.mark.parametrize(
    ("host", "formatted"),
    [
        pytest.param(uvicorn, f"INFO:     {STARTED}", id="uvicorn"),
        pytest.param(gunicorn, f"[INFO] {STARTED}", id="gunicorn"),
    ],
)
def test_app_servers_lines_take_the_hosts_format_and_level(host, formatted) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with _run(host(port), port, {}, "") as server:
        server.wait_for_log(formatted)
        fetch_token(server.url + "/demo")  # a page: a debug line of app_server, not shown
    assert "created session" not in server.log(), "the host's level (info) holds"


async def test_json_lines_from_every_process_of_num_procs() -> None:
    args = ["--num-procs", "2", "--log-format", "json"]
    with run_app_server(EXAMPLES / "demo.py", args=args) as server:
        server.wait_for_log("running on")
        fetch_token(server.url + "/demo")
        server.wait_for_log("created session")
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    loggers = {entry["logger"] for entry in entries}
    assert {"app_server.supervisor", "app_server.server", "uvicorn.error"} <= loggers
    started = [e for e in entries if e["message"].startswith("app_server started")]
    assert len(started) == 2, "one line from each worker"
