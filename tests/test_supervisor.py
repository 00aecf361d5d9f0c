"""``--num-procs``: workers that answer their supervisor while they start, deaths logged with
why, replacements with a back-off, and a clear stop when workers keep dying."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from app_server import protocol
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, free_port, run_app_server
from tests.wsclient import BokehSocket, fetch_token

# Imported by every Python process started with this directory on PYTHONPATH: the first
# import of bokeh sleeps, as the heavy imports of a worker take seconds on a starved host.
SLOW_BOKEH = """
import os, sys, time

class SlowBokeh:
    def find_spec(self, name, path=None, target=None):
        if name == "bokeh":
            sys.meta_path.remove(self)
            time.sleep(float(os.environ["SLOW_BOKEH_IMPORT"]))
        return None

sys.meta_path.insert(0, SlowBokeh())
"""


def worker_pids(server: RunningServer) -> list[int]:
    return [int(pid) for pid in re.findall(r"started worker process \[(\d+)\]", server.log())]


def wait_for_count(server: RunningServer, text: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count(text) < count:
        server.check_alive()
        assert time.monotonic() < deadline, f"{count} x {text!r} not in:\n{server.log()[-3000:]}"
        time.sleep(0.1)


async def assert_serves(server: RunningServer) -> None:
    token = fetch_token(server.url + "/demo")
    async with await BokehSocket.open(server.url.replace("http", "ws") + "/demo/ws", token) as ws:
        await ws.receive_type(protocol.ACK)
        reply = await ws.request(protocol.PULL_DOC_REQ)
        assert reply.content["doc"]["title"] == "app_server demo"


async def test_workers_slow_to_import_answer_their_supervisor_and_serve(tmp_path: Path) -> None:
    """Each worker's bokeh import takes 3 s, three times the health-check time: uvicorn's
    supervisor killed such workers in a loop; here they answer from their first instant."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_BOKEH)
    env = {"PYTHONPATH": str(tmp_path), "SLOW_BOKEH_IMPORT": "3"}
    args = ["--num-procs", "2", "--worker-healthcheck-timeout", "1"]
    with run_app_server(EXAMPLES / "demo.py", args=args, env=env) as server:
        log = server.wait_for_log("running on", timeout=60)
        assert f"running on {server.url}/demo (2 worker processes)" in log
        await assert_serves(server)
        assert len(worker_pids(server)) == 2, "no worker was replaced"
        assert "WARNING" not in server.log()


async def test_a_worker_killed_by_sigkill_is_a_warning_and_is_replaced() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--num-procs", "2"]) as server:
        server.wait_for_log("running on", timeout=60)
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        line = server.wait_for_log(f"worker process [{victim}] was killed by signal SIGKILL")
        death = next(entry for entry in line.splitlines() if f"[{victim}] was killed" in entry)
        assert " WARNING " in death and "a replacement starts in" in death
        wait_for_count(server, "app_server started", 3)  # the replacement serves
        assert len(worker_pids(server)) == 3
        await assert_serves(server)


SELF_KILLING_APP = """
import os, signal

def on_server_loaded(server_context):  # runs in each worker, never in the supervisor
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_workers_that_keep_dying_stop_the_server_with_an_error(tmp_path: Path) -> None:
    app = tmp_path / "dying"
    app.mkdir()
    (app / "main.py").write_text("from bokeh.io import curdoc\n")
    (app / "server_lifecycle.py").write_text(SELF_KILLING_APP)
    command = [sys.executable, "-m", "app_server.cli", "serve", str(app)]
    command += ["--num-procs", "2", "--port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    deaths = re.findall(
        r"WARNING .*was killed by signal SIGKILL.*replacement starts in (\S+) s", result.stderr
    )
    assert len(deaths) >= 4
    assert "ERROR" in result.stderr and "Workers keep dying, so app-server stops" in result.stderr
    assert not re.search(r"started worker process", result.stderr.split("ERROR", 1)[1])


async def test_sighup_replaces_each_worker_once_its_replacement_serves() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--num-procs", "2"]) as server:
        server.wait_for_log("running on", timeout=60)
        old = worker_pids(server)
        server.process.send_signal(signal.SIGHUP)
        for pid in old:
            server.wait_for_log(f"worker process [{pid}] stopped (exited with status 0)", 60)
        assert len(worker_pids(server)) == 4
        assert server.log().count("app_server started") == 4
        assert "WARNING" not in server.log()
        await assert_serves(server)


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (its parent, the supervisor, was killed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_workers_stop_when_their_supervisor_is_killed() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--num-procs", "2"]) as server:
        server.wait_for_log("running on", timeout=60)
        pids = worker_pids(server)
        server.process.kill()
        deadline = time.monotonic() + 30
        while not all(ended(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            time.sleep(0.1)
