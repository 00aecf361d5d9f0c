"""The fuzz run: a live server, fuzz workers, an honest session, RSS samples, and the checks.

``app-server serve examples/demo.py`` runs in a subprocess. Fuzz workers open connection after
connection (reconnecting after each close) and send fuzz cases (:mod:`fuzz.cases`). For each
connection the oracle (:mod:`fuzz.oracle`) predicts which messages are complete (each must get
exactly one reply naming it, of a type that fits) and with which code the server must hang up,
if at all. Meanwhile an honest session moves the demo's slider again and again and must see
every reply it expects and nothing else, and the server's RSS must stay bounded.

The run is reproducible from its seed: every failure names it, and
``python -m fuzz --seed <n>`` (or ``make fuzz FUZZ_SEED=<n>``) replays it. Exit status: 0 when
every expectation held, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.servers import ROOT, ServerProcess, free_port, rss_mb, serving, with_root_on_path
from fuzz.cases import CASE_WEIGHTS, LIMIT, Case, DemoIds, Fuzzer, Target, slider_event
from fuzz.framing import (
    ERROR,
    OK,
    PATCH_DOC,
    PULL_DOC_REPLY,
    PULL_DOC_REQ,
    SERVER_INFO_REQ,
    BokehMessage,
    new_message,
)
from fuzz.oracle import Prediction, predict
from fuzz.rawws import (
    VALID_CLOSE_CODES,
    Closed,
    RawWebSocket,
    WireFrame,
    fetch_token,
    message_frames,
    open_raw,
)

__all__ = ["Config", "FuzzFailure", "main", "run"]

DEMO = ROOT / "examples" / "demo.py"
RSS_GROWTH_BOUND_MB = 100  # over the warmed-up server's RSS, through the whole fuzz run
# lines no server run may log: a coroutine or task was lost
NEVER = ("was never awaited", "Task was destroyed but it is pending", "Task exception was never")
# a full-size run (the default) must show every kind of case and these closes
FULL_SIZE_CONNECTIONS = 300


@dataclass(frozen=True)
class Config:
    seed: int = 20261122
    workers: int = 3  # fuzz connections open at the same time
    connections: int = 1000  # per worker: about a minute and 12,000 messages
    max_cases: int = 16  # per connection
    time_limit: float = 300.0  # seconds for the fuzz phase; the run fails past it

    def note(self) -> str:
        return (
            f"(fuzz seed {self.seed}; replay with `python -m fuzz --seed {self.seed} "
            f"--workers {self.workers} --connections {self.connections}` "
            f"or `make fuzz FUZZ_SEED={self.seed}`)"
        )


class FuzzFailure(AssertionError):
    """An expectation failed; the message names the seed."""


# -- one connection ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened on one fuzz connection."""

    worker: int
    index: int
    cases: list[str]
    messages: int  # complete messages the server saw
    replies: Counter[str]
    closed: Closed
    predicted: Prediction
    lost_replies: int  # replies the server dropped when it closed after a violation
    problems: list[str]


class ReplyChecker:
    """Matches the server's replies against the oracle's list, in order."""

    def __init__(self, expected: list[tuple[str, frozenset[str]]], problems: list[str]) -> None:
        self.expected = list(expected)
        self.problems = problems
        self.replies: Counter[str] = Counter()

    def check(self, reply: BokehMessage, *, may_skip: bool) -> None:
        self.replies[reply.msgtype] += 1
        if reply.msgtype == ERROR:
            error = reply.content
            if not isinstance(error, dict):
                self.problems.append(f"an ERROR reply whose content is not an object: {error}")
            elif error.get("traceback") is not None or "Traceback" in str(error.get("text")):
                self.problems.append(f"an ERROR reply carried a traceback: {error}")
        while self.expected and self.expected[0][0] != reply.reqid:
            if not may_skip:
                self.problems.append(f"no reply to message {self.expected[0][0]}")
            self.expected.pop(0)
        if not self.expected:
            self.problems.append(f"an unexpected reply {reply.msgtype} to {reply.reqid!r}")
            return
        msgid, allowed = self.expected.pop(0)
        if reply.msgtype not in allowed:
            text = reply.content.get("text") if reply.msgtype == ERROR else ""
            self.problems.append(f"{msgid} got {reply.msgtype} {text!r}, not {sorted(allowed)}")


async def replies_until(
    socket_: RawWebSocket, checker: ReplyChecker, sentinel: str | None
) -> Closed | None:
    """Check replies until the one to ``sentinel`` (then None) or until the server closes."""
    for _ in range(100_000):
        result = await socket_.receive(timeout=30)
        if isinstance(result, Closed):
            return result
        if result.reqid is None:
            continue  # a change broadcast by the session (its callbacks ran)
        checker.check(result, may_skip=sentinel is None)
        if result.reqid == sentinel:
            return None
    raise TimeoutError("100,000 messages and still no reply to the sentinel")


async def fuzz_connection(
    server: ServerProcess, target: Target, cases: list[Case], worker: int, index: int
) -> Outcome:
    """Send the cases that keep the connection open, then a sentinel request, and check every
    reply up to the sentinel's; then send the case that breaks the protocol (if the last one
    does) and check the close. One oracle run over all frames predicts both phases."""
    sentinel = new_message(SERVER_INFO_REQ)
    labels = {msgid: label for case in cases for msgid, label in case.labels.items()}
    head = [frame for case in cases for frame in case.frames]
    tail: list[WireFrame] = []
    if predict(head, labels).close is not None:
        head = [frame for case in cases[:-1] for frame in case.frames]
        tail = cases[-1].frames
    head += message_frames(sentinel)
    first = predict(head, labels)
    if first.close is not None:  # a message left incomplete: the sentinel itself breaks it
        head, tail = [], head
    predicted = predict(head + tail, labels)
    problems: list[str] = []
    checker = ReplyChecker(predicted.replies, problems)
    socket_ = await open_raw(server, target.token)
    closed: Closed | None = None
    try:
        if head:
            await socket_.send_frames(head)
            closed = await replies_until(socket_, checker, sentinel.msgid)
            if closed is not None:
                problems.append(f"the server closed the connection early: {closed.describe()}")
        if closed is None and tail:
            await socket_.send_frames(tail)
            closed = await replies_until(socket_, checker, None)
            if closed is None:
                problems.append("the connection stayed open")
        if closed is None:
            closed = await socket_.close(1000)
    except TimeoutError as exc:
        problems.append(f"the server went silent: {exc}")
        socket_.abort()
        closed = Closed(None, "timeout", clean=False)
    websocket_failure = predicted.close is not None and not predicted.by_framing
    if not closed.clean:
        # failing the connection, uvicorn closes the socket at once; with bytes of ours still
        # unread there, the kernel resets the connection and the close frame may be lost
        if not (websocket_failure or predicted.racing) or closed.reason == "timeout":
            problems.append(f"the connection ended without a close frame ({closed.reason})")
    elif closed.code not in VALID_CLOSE_CODES:
        problems.append(f"invalid close code {closed.code}")
    elif predicted.close is None and closed.code != 1000:
        problems.append(f"the server closed with {closed.describe()}; it had no reason to")
    elif predicted.close is not None and closed.code not in predicted.codes:
        problems.append(f"expected close {sorted(predicted.codes)}, got {closed.describe()}")
    return Outcome(
        worker=worker,
        index=index,
        cases=[case.name for case in cases],
        messages=len(predicted.replies),
        replies=checker.replies,
        closed=closed,
        predicted=predicted,
        lost_replies=len(checker.expected),
        problems=problems,
    )


async def fuzz_worker(
    server: ServerProcess, config: Config, worker: int, targets: list[Target], honest: DemoIds
) -> list[Outcome]:
    rng = random.Random(config.seed * 1000 + worker)
    fuzzer = Fuzzer(rng, worker, honest)
    outcomes = []
    for index in range(config.connections):
        target = rng.choice(targets)
        cases: list[Case] = []
        for _ in range(rng.randrange(1, config.max_cases)):
            cases.append(fuzzer.case(target))
            frames = [frame for case in cases for frame in case.frames]
            if predict(frames, {}).close is not None:
                break  # the server hangs up here: reconnect for the next cases
        outcomes.append(await fuzz_connection(server, target, cases, worker, index))
    return outcomes


# -- the honest session and the server's memory ------------------------------------------------


@dataclass
class HonestLog:
    rounds: int = 0
    problems: list[str] = field(default_factory=list)


async def honest_session(
    socket_: RawWebSocket, ids: DemoIds, stop: asyncio.Event, log: HonestLog
) -> None:
    """Move the slider until the fuzzers stop; every move must come back exactly as expected."""
    for k in range(100_000):
        if stop.is_set() and k >= 20:
            return
        value = round(0.5 + (k % 40) * 0.1, 1)
        patch = new_message(PATCH_DOC, {"events": [slider_event(ids, value)]})
        await socket_.send_message(patch)
        seen: list[dict[str, Any]] = []
        reply: BokehMessage | None = None
        for _ in range(1000):
            result = await socket_.receive(timeout=30)
            if isinstance(result, Closed):
                log.problems.append(f"round {k}: the server closed: {result.describe()}")
                return
            if result.reqid == patch.msgid:
                reply = result
                break
            if result.msgtype != PATCH_DOC:
                log.problems.append(f"round {k}: unexpected {result.msgtype} {result.content}")
            seen += result.content.get("events", [])
        if reply is None or reply.msgtype != OK:
            what = "no reply" if reply is None else f"{reply.msgtype} {reply.content}"
            log.problems.append(f"round {k}: {what}")
        touched = {event.get("model", {}).get("id") for event in seen}
        if not touched <= {ids.status, ids.source}:
            log.problems.append(f"round {k}: changes to other models reached us: {seen}")
        texts = [e.get("new") for e in seen if e.get("attr") == "text"]
        if texts != [f"frequency = {value}, resets: 0"]:
            log.problems.append(f"round {k}: status texts {texts} after moving to {value}")
        log.rounds = k + 1
        await asyncio.sleep(0.02)


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    for _ in range(100_000):
        samples.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
            return
        except TimeoutError:
            pass


async def pull_ids(socket_: RawWebSocket) -> DemoIds:
    reply = await socket_.request(new_message(PULL_DOC_REQ))
    if reply.msgtype != PULL_DOC_REPLY:
        raise FuzzFailure(f"PULL-DOC-REQ got {reply.msgtype} {reply.content}")
    return DemoIds.of(reply.content["doc"])


# -- the run -----------------------------------------------------------------------------------


class Checks:
    """Collects failed expectations, each with the seed."""

    def __init__(self, config: Config) -> None:
        self.note = config.note()
        self.failures: list[str] = []

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)


async def fuzz(server: ServerProcess, config: Config, checks: Checks) -> None:
    """The fuzz phase and everything checked on the live server."""
    demo = server.url + "/demo"
    honest_token = fetch_token(demo)
    honest = await open_raw(server, honest_token)
    honest_ids = await pull_ids(honest)

    # two sessions per worker: one clean, one dirty; each connection picks one
    targets: list[list[Target]] = []
    tokens = [honest_token]
    for _ in range(config.workers):
        mine = []
        for clean in (True, False):
            token = fetch_token(demo)
            tokens.append(token)
            socket_ = await open_raw(server, token)
            mine.append(Target(token, await pull_ids(socket_), clean))
            await socket_.close()
        targets.append(mine)
    session_ids = {token_session_id(token) for token in tokens}

    pid = server.pid
    log_start = len(server.log())
    baseline = rss_mb(pid)
    samples: list[float] = []
    stop = asyncio.Event()
    honest_log = HonestLog()
    sampler = asyncio.create_task(sample_rss(pid, samples, stop))
    honest_task = asyncio.create_task(honest_session(honest, honest_ids, stop, honest_log))
    started = time.monotonic()
    workers = [
        fuzz_worker(server, config, w, targets[w], honest_ids) for w in range(config.workers)
    ]
    try:
        results = await asyncio.wait_for(asyncio.gather(*workers), timeout=config.time_limit)
    except TimeoutError:
        raise FuzzFailure(f"the fuzz phase did not finish in {config.time_limit:.0f}s") from None
    finally:
        stop.set()
        await asyncio.wait_for(honest_task, 120)
        await sampler
    elapsed = time.monotonic() - started
    outcomes = [outcome for worker in results for outcome in worker]

    # the record: every connection's fate
    cases = Counter(name for o in outcomes for name in o.cases)
    closes = Counter(o.closed.describe().split(" '")[0] for o in outcomes)
    replies: Counter[str] = sum((o.replies for o in outcomes), Counter())
    total_messages = sum(o.messages for o in outcomes)
    lost = sum(o.lost_replies for o in outcomes)
    peak = max(samples)
    print(f"fuzz seed {config.seed}: {len(outcomes)} connections, {sum(cases.values())} cases,")
    print(f"{total_messages} complete messages in {elapsed:.1f}s", end="; ")
    print(f"honest rounds {honest_log.rounds}")
    print(f"cases: {dict(sorted(cases.items()))}")
    print(f"closes: {dict(sorted(closes.items()))}")
    print(f"replies: {dict(sorted(replies.items()))}; replies lost at a close: {lost}")
    print(f"server RSS: {baseline:.0f} MB before, peak {peak:.0f} MB", flush=True)

    problems = [
        f"worker {o.worker} connection {o.index} {o.cases}: {p}"
        for o in outcomes
        for p in o.problems
    ]
    checks.expect(
        not problems,
        f"{len(problems)} connections did not go as predicted, first ones:\n  "
        + "\n  ".join(problems[:15]),
    )
    checks.expect(
        not honest_log.problems,
        f"the honest session was disturbed: {honest_log.problems[:5]}",
    )
    checks.expect(honest_log.rounds >= 20, f"only {honest_log.rounds} honest rounds")

    # the fuzzer did what it claims: every kind of case and close, many replies of each kind
    if len(outcomes) >= FULL_SIZE_CONNECTIONS:
        checks.expect(
            total_messages >= 3 * len(outcomes), f"only {total_messages} complete messages"
        )
        missing = {name for name, _ in CASE_WEIGHTS} - set(cases)
        checks.expect(not missing, f"no case of the kinds {sorted(missing)}")
        seen_codes = {o.closed.code for o in outcomes}
        checks.expect(
            {1000, 1002, 1003, 1007, 1009} <= seen_codes, f"only the close codes {seen_codes}"
        )
        checks.expect(replies[ERROR] > 100 and replies[OK] > 100, f"too few replies: {replies}")
    else:
        print(f"(fewer than {FULL_SIZE_CONNECTIONS} connections: coverage not checked)")

    # memory stayed bounded
    checks.expect(
        peak - baseline < RSS_GROWTH_BOUND_MB,
        f"server RSS grew from {baseline:.0f} MB to {peak:.0f} MB "
        f"(bound: +{RSS_GROWTH_BOUND_MB} MB)",
    )

    # the server still answers pages, health checks and new sessions; the honest one is intact
    with urllib.request.urlopen(demo, timeout=10) as page:
        checks.expect(page.status == 200, f"the page answers {page.status}")
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as health:
        checks.expect(health.read() == b"ok", "/healthz is not ok")
    fresh = await open_raw(server, fetch_token(demo))
    fresh_ids = await pull_ids(fresh)
    patch = new_message(PATCH_DOC, {"events": [slider_event(fresh_ids, 2.0)]})
    reply = await fresh.request(patch)
    checks.expect(reply.msgtype == OK, f"a fresh session fails: {reply.content}")
    await fresh.close()
    doc = (await honest.request(new_message(PULL_DOC_REQ))).content["doc"]
    checks.expect(doc["title"] == "app_server demo", f"the honest title is {doc['title']!r}")
    checks.expect("hijacked" not in json.dumps(doc), "a foreign patch reached the document")
    await honest.close()

    # every protocol error the server logged names the session it happened in
    log = server.log()[log_start:]
    checks.expect("Exception in ASGI application" not in log, "an exception escaped app_server")
    pattern = re.compile(
        r"session (\S+): (closing the websocket|unexpected message type|handling \S+ failed)"
    )
    logged = pattern.findall(log)
    checks.expect(bool(logged), "no protocol error was logged with its session")
    unknown = {sid for sid, _ in logged} - session_ids
    checks.expect(not unknown, f"protocol errors logged for unknown sessions {unknown}")
    closes_logged = sum(1 for _, what in logged if what == "closing the websocket")
    by_framing = [o for o in outcomes if o.predicted.by_framing]
    # a connection closed by the Bokeh framing, with its code and a reason, was logged
    sure = [
        o
        for o in by_framing
        if o.closed.clean
        and o.closed.code == o.predicted.close
        and o.closed.reason
        and not o.predicted.racing
    ]
    checks.expect(
        len(sure) <= closes_logged <= len(by_framing),
        f"{len(by_framing)} connections broke the Bokeh framing ({len(sure)} surely closed by "
        f"app_server with a reason); {closes_logged} closes were logged with a reason",
    )


def token_session_id(token: str) -> str:
    from bokeh.util.token import get_session_id

    return get_session_id(token)


def run(config: Config) -> list[str]:
    """Start the server, fuzz it, stop it: the failed expectations (none: all went well)."""
    checks = Checks(config)
    port = free_port()
    command = [sys.executable, "-m", "app_server.cli", "serve", str(DEMO), "--port", str(port)]
    command += ["--websocket-max-message-size", str(LIMIT), "--log-level", "info"]
    env = with_root_on_path()
    env.pop("BOKEH_ALLOW_WS_ORIGIN", None)
    with serving(command, port, env=env, cwd=ROOT, log_prefix="fuzz-", label="app-server") as s:
        try:
            asyncio.run(fuzz(s, config, checks))
        except FuzzFailure as failure:
            checks.failures.append(str(failure))
        except Exception:  # the run broke off: a refused handshake, a timeout, a dead server
            checks.failures.append(f"the run broke off:\n{traceback.format_exc(limit=6)}")
        server = s
    lost = [line for line in server.log().splitlines() if any(p in line for p in NEVER)]
    checks.expect(not lost, f"the server logged lost coroutines or tasks: {lost[:5]}")
    if checks.failures:
        print(f"the server's log: {server.log_path}", file=sys.stderr)
    else:
        os.unlink(server.log_path)
    return checks.failures


def _env(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def parse_args(argv: Sequence[str] | None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="python -m fuzz",
        description=(
            "Fuzz a live app-server over raw websockets. Each option's default may be set by "
            "the environment variable named in its help."
        ),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=int(_env("FUZZ_SEED", defaults.seed)),
        help=f"the run's seed (FUZZ_SEED; default {defaults.seed})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(_env("FUZZ_WORKERS", defaults.workers)),
        help=f"connections open at once (FUZZ_WORKERS; default {defaults.workers})",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=int(_env("FUZZ_CONNECTIONS", defaults.connections)),
        help=f"connections per worker (FUZZ_CONNECTIONS; default {defaults.connections})",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=_env("FUZZ_TIME_LIMIT", defaults.time_limit),
        help=f"seconds the fuzz may take (FUZZ_TIME_LIMIT; default {defaults.time_limit:.0f})",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.connections < 1 or args.time_limit <= 0:
        parser.error("--workers, --connections and --time-limit must be positive")
    return Config(
        seed=args.seed,
        workers=args.workers,
        connections=args.connections,
        time_limit=args.time_limit,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as error:  # a FUZZ_* variable that is not a number
        print(f"python -m fuzz: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    failures = run(config)
    elapsed = time.monotonic() - started
    if failures:
        print(f"\nFUZZ FAILED {config.note()}:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    print(f"fuzz passed in {elapsed:.0f}s {config.note()}")
    return 0
