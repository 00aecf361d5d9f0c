"""A rolling restart behind nginx loses nothing: deploy/nginx.conf in front of two
``app-server serve --shutdown-delay`` backends, each stopped with SIGTERM and replaced in turn on
its port while a bounded stream of page loads and websocket opens goes through the proxy.

Every load gets its page, its websocket and its document; every old backend exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from pathlib import Path

import pytest
from bokeh.util.token import generate_secret_key

from app_server import protocol
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, free_port, run_app_server
from tests.test_deploy_nginx import NGINX, run_nginx, token_of
from tests.wsclient import BokehSocket

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx")

MAX_LOADS = 3000  # bounds the stream, whatever happens to the restarts
EXIT_WITHIN = 30.0


async def load_once(url: str) -> None:
    """What a new tab does: the page, its websocket, the ACK and the document."""
    token = await asyncio.to_thread(token_of, url + "/demo")
    ws_url = url.replace("http", "ws") + "/demo/ws"
    async with await BokehSocket.open(ws_url, token, open_timeout=20) as socket:
        await asyncio.wait_for(socket.receive_type(protocol.ACK), 20)
        reply = await asyncio.wait_for(socket.request(protocol.PULL_DOC_REQ), 20)
    assert reply.content["doc"]["title"] == "app_server demo"


class LoadStream:
    """Two clients loading tabs one after another until stopped (or MAX_LOADS)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loads = 0
        self.failures: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(),))

    async def _client(self) -> None:
        while not self.stopped.is_set() and self.loads < MAX_LOADS:
            try:
                await load_once(self.url)
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.loads += 1

    async def _run(self) -> None:
        await asyncio.gather(self._client(), self._client())

    def __enter__(self) -> LoadStream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(60)


def wait_for_traffic(server: RunningServer, loads: LoadStream) -> None:
    """Until the proxy sends the new backend a page (nginx retries a failed backend later)."""
    for _ in range(600):
        if '"GET /demo HTTP/1.1" 200' in server.log():
            return
        assert not loads.stopped.wait(0.1)
    pytest.fail(f"nginx sent the restarted backend no page:\n{server.log()[-2000:]}")


def test_a_rolling_restart_of_two_backends_fails_no_page_load() -> None:
    env = {"BOKEH_SECRET_KEY": generate_secret_key()}
    args = ["--use-xheaders", "--session-ids", "signed", "--shutdown-delay", "1"]
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        backends = [
            stack.enter_context(run_app_server(EXAMPLES / "demo.py", args=args, env=env, port=p))
            for p in ports
        ]
        proxy_port, _ = stack.enter_context(run_nginx(ports))
        with LoadStream(f"http://127.0.0.1:{proxy_port}") as loads:
            for i, old in enumerate(backends):
                old.process.send_signal(signal.SIGTERM)
                old.process.wait(EXIT_WITHIN)
                assert old.process.returncode == 0, old.log()[-3000:]
                new = stack.enter_context(
                    run_app_server(EXAMPLES / "demo.py", args=args, env=env, port=ports[i])
                )
                wait_for_traffic(new, loads)
        assert loads.loads >= 20, "the stream ran through both restarts"
        failed = f"{len(loads.failures)} of {loads.loads} loads failed: {loads.failures[:5]}"
        assert loads.failures == [], failed
        for old in backends:
            assert "app_server stopped" in old.log()
