"""``--num-procs``: worker processes sharing the listening sockets, watched by the parent.

Each worker answers its supervisor's pings from its first instant (``app_server/_worker.py``
starts the answering thread before bokeh and the apps are imported), so a slow start on a busy
host is not taken for a hang. A worker that dies or stops answering is logged at WARNING with
why, and replaced after a back-off; if a worker's replacements keep dying young, the
supervisor gives up with an error instead of burning the host's CPU on restarts for ever.

uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``) pings its workers one after
another, each ping waiting up to 5 s, and its spawned workers re-import the ``app-server``
script, bokeh included, before they can answer: on a starved host they were killed in a loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from uvicorn.config import STARTUP_FAILURE  # a worker's status when the apps' startup failed

__all__ = ["Supervisor", "death_cause"]

log = logging.getLogger("app_server.supervisor")

WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
PING_INTERVAL = 0.5  # seconds between a worker's answer and the next ping
FIRST_BACKOFF = 0.5  # seconds before a dead worker's replacement starts; doubles...
MAX_BACKOFF = 30.0  # ...up to this, while replacements keep dying young
YOUNG = 60.0  # a worker that dies within this many seconds of its start died young
GIVE_UP_AFTER = 5  # a worker dying young this many times in a row: the service is broken


def death_cause(returncode: int) -> str:
    """``exited with status 1``, ``was killed by signal SIGKILL``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"was killed by signal {name}"


class Worker:
    """One worker process and the supervisor's end of its health-check channel."""

    def __init__(self, slot: int, listeners: Sequence[socket.socket]) -> None:
        self.slot = slot
        ours, theirs = socket.socketpair()
        fds = [sock.fileno() for sock in listeners]
        command = [sys.executable, "-P", str(WORKER_SCRIPT), *map(str, fds), str(theirs.fileno())]
        try:
            # its own process group: a Ctrl-C reaches the supervisor, which passes it on once
            self.process = subprocess.Popen(
                command, pass_fds=[*fds, theirs.fileno()], stdin=subprocess.DEVNULL, process_group=0
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.channel = ours
        self.started_at = time.monotonic()
        self.asked_at: float | None = None  # when the unanswered ping was sent
        self.answered_at = self.started_at
        self.serving = False
        self.hung_up = False  # its end of the channel closed: it is exiting
        self.told_to_stop = False
        log.info("started worker process [%d]", self.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, now: float) -> None:
        try:
            self.channel.send(b"?")
        except OSError:
            return  # gone: its exit is seen by poll()
        self.asked_at = now

    def read_answer(self, now: float) -> None:
        try:
            answer = self.channel.recv(64)
        except OSError:
            answer = b""
        if not answer:
            self.hung_up = True
            return
        self.serving = answer[-1:] == b"1"
        self.asked_at = None
        self.answered_at = now

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.channel.close()


class Supervisor:
    """Keep ``count`` workers serving on ``listeners`` until SIGINT or SIGTERM; SIGHUP
    replaces them one by one, each old worker stopping once its replacement serves."""

    def __init__(
        self,
        count: int,
        listeners: Sequence[socket.socket],
        *,
        healthcheck_timeout: float,
        announce: Sequence[str] = (),
    ) -> None:
        self.count = count
        self.listeners = listeners
        self.timeout = healthcheck_timeout
        self.announce = list(announce)  # each app's URL, logged once every worker serves
        self.workers: dict[int, Worker] = {}  # by slot
        self.retiring: list[Worker] = []  # replaced after SIGHUP, stopping once it serves
        self.restarts: dict[int, float] = {}  # slot -> when its replacement starts
        self.young_deaths: dict[int, int] = {}  # slot -> deaths in a row within YOUNG
        self.signals: list[int] = []
        self.stop_signal: int = signal.SIGTERM
        self.status = 0

    def run(self) -> int:
        """Serve until told to stop; the exit status (0, or why the workers could not serve)."""
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        log.info(
            "supervising %d worker processes [parent %d]; a worker not answering within "
            "%g s is replaced",
            self.count, os.getpid(), self.timeout,
        )  # fmt: skip
        try:
            for slot in range(self.count):
                self.workers[slot] = Worker(slot, self.listeners)
            while self._step():
                pass
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)

    def _step(self) -> bool:
        """One turn: signals, pings and answers, deaths, restarts due. False: stop."""
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGHUP:
                self._replace_all()
            else:
                log.info("received %s: stopping the workers", signal.Signals(sig).name)
                self.stop_signal = sig
                return False
        now = time.monotonic()
        live = [*self.workers.values(), *self.retiring]
        for worker in live:
            if worker.asked_at is None and now - worker.answered_at >= PING_INTERVAL:
                worker.ask(now)
        channels = [worker.channel for worker in live if not worker.hung_up]
        readable, _, _ = select.select(channels, [], [], 0.2)
        now = time.monotonic()
        for worker in live:
            if worker.channel in readable:
                worker.read_answer(now)
        for worker in live:
            if not self._check(worker, now):
                return False
        for slot, due in list(self.restarts.items()):
            if now >= due:
                del self.restarts[slot]
                self.workers[slot] = Worker(slot, self.listeners)
        self._retire_replaced()
        if self.announce and len(self.workers) == self.count:
            if all(worker.serving for worker in self.workers.values()):
                for url in self.announce:
                    log.info("running on %s (%d worker processes)", url, self.count)
                self.announce = []
        return True

    def _check(self, worker: Worker, now: float) -> bool:
        """Whether ``worker`` lives; a death is logged and its replacement scheduled. False
        when the supervisor gives up."""
        returncode = worker.process.poll()
        if worker in self.retiring:
            if returncode is not None:
                self.retiring.remove(worker)
                worker.channel.close()
                log.info("worker process [%d] stopped (%s)", worker.pid, death_cause(returncode))
            return True
        if returncode is None and worker.asked_at is not None:
            if now - worker.asked_at > self.timeout:
                worker.kill()
                cause = f"did not answer its supervisor within {self.timeout:g} s and was killed"
                return self._died(worker, cause, now)
        if returncode is None:
            return True
        worker.channel.close()
        if returncode == STARTUP_FAILURE and not worker.serving:
            log.error(
                "worker process [%d] failed to start (the app's startup failed: see the error "
                "above); stopping",
                worker.pid,
            )
            self.status = STARTUP_FAILURE
            return False
        return self._died(worker, death_cause(returncode), now)

    def _died(self, worker: Worker, cause: str, now: float) -> bool:
        slot = worker.slot
        del self.workers[slot]
        lived = now - worker.started_at
        young = (self.young_deaths.get(slot, 0) + 1) if lived < YOUNG else 1
        self.young_deaths[slot] = young
        if young >= GIVE_UP_AFTER:
            log.error(
                "worker process [%d] %s, after %.1f s: the %dth worker in a row to die within "
                "%g s of its start. Workers keep dying, so app-server stops (the warnings above "
                "say how each died)",
                worker.pid, cause, lived, young, YOUNG,
            )  # fmt: skip
            self.status = 1
            return False
        delay = min(FIRST_BACKOFF * 2 ** (young - 1), MAX_BACKOFF)
        log.warning(
            "worker process [%d] %s, after %.1f s; a replacement starts in %g s",
            worker.pid, cause, lived, delay,
        )  # fmt: skip
        self.restarts[slot] = now + delay
        return True

    def _replace_all(self) -> None:
        log.info("received SIGHUP: replacing the workers one by one")
        for slot, worker in list(self.workers.items()):
            self.retiring.append(worker)
            self.workers[slot] = Worker(slot, self.listeners)

    def _retire_replaced(self) -> None:
        """Stop each retiring worker once the replacement in its slot serves."""
        for old in self.retiring:
            new = self.workers.get(old.slot)
            if new is not None and new.serving and not old.told_to_stop:
                old.told_to_stop = True
                old.signal(signal.SIGTERM)

    def _stop_all(self) -> None:
        """Pass the stop signal to every worker and wait while they drain their sessions.
        Each further signal is passed on too (a second Ctrl-C stops uvicorn at once); a
        third kills them."""
        workers = [*self.workers.values(), *self.retiring]
        for worker in workers:
            worker.signal(self.stop_signal)
        # the port closes once each worker has closed its own copy: no connection then waits
        # in a backlog that no process accepts from
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self.signals.clear()
        further = 0
        for worker in workers:
            while worker.process.poll() is None:
                while self.signals:
                    further += 1
                    sig = self.signals.pop(0) if further < 2 else signal.SIGKILL
                    for other in workers:
                        other.signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(0.2)
            worker.channel.close()
