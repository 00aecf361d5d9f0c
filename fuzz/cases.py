"""Random JSON, mutations of valid messages, and the fuzz cases built from them.

Each case is a few websocket frames aimed at one session of ``examples/demo.py``: a valid
message, or one broken in a way a hostile or buggy client could break it (broken JSON, wrong
types, unknown message types, ``num_buffers`` lies, binary frames out of place, patches naming
unknown models and attributes, events for the models of another document, huge strings within
the size limit, oversized messages, malformed websocket frames). A case may carry labels, the
exact reply types some of its messages must get; :mod:`fuzz.oracle` works out the rest.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fuzz.framing import (
    ERROR,
    OK,
    PATCH_DOC,
    PULL_DOC_REPLY,
    PULL_DOC_REQ,
    PUSH_DOC,
    SERVER_INFO_REQ,
)
from fuzz.rawws import (
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    WireFrame,
    binary,
    bokeh_frames,
    dumps,
    find_model,
    text,
)

__all__ = ["CASE_WEIGHTS", "LIMIT", "Case", "DemoIds", "Fuzzer", "Target", "slider_event"]

LIMIT = 256 * 1024  # --websocket-max-message-size of the fuzzed server
ONLY_ERROR = frozenset({ERROR})
ONLY_OK = frozenset({OK})


# -- the documents the fuzzer aims at ----------------------------------------------------------


@dataclass(frozen=True)
class DemoIds:
    """The models of one session of examples/demo.py."""

    slider: str
    button: str
    status: str
    source: str
    plot: str

    @classmethod
    def of(cls, doc_json: Any) -> DemoIds:
        return cls(
            slider=find_model(doc_json, name="frequency"),
            button=find_model(doc_json, name="reset"),
            status=find_model(doc_json, name="status"),
            source=find_model(doc_json, kind="ColumnDataSource"),
            plot=find_model(doc_json, name="plot"),
        )

    def all(self) -> list[str]:
        return [self.slider, self.button, self.status, self.source, self.plot]


def slider_event(ids: DemoIds, value: Any) -> dict[str, Any]:
    return {"kind": "ModelChanged", "model": {"id": ids.slider}, "attr": "value", "new": value}


def click_event(ids: DemoIds) -> dict[str, Any]:
    return {
        "kind": "MessageSent",
        "msg_type": "bokeh_event",
        "msg_data": {
            "type": "event",
            "name": "button_click",
            "values": {"type": "map", "entries": [["model", {"id": ids.button}]]},
        },
    }


def pushed_document() -> dict[str, Any]:
    """The content of a PUSH-DOC: a document with one Div, serialized by Bokeh."""
    from bokeh.document import Document
    from bokeh.models.widgets.markups import Div

    document = Document()
    document.add_root(Div(text="pushed by the fuzzer", name="pushed"))
    serialized = document.to_json()
    return {"doc": getattr(serialized, "content", serialized)}


# -- random values and mutations ---------------------------------------------------------------

MODEL_NAMES = ["Div", "Slider", "ColumnDataSource", "Button", "Plot", "NoSuchModel", "Range1d"]
STRINGS = ["", "x", "value", "text", "\u00e9\u00e8", "\ud800", "\x00", "NaN", "p1001", "💥" * 3]


def random_string(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(STRINGS)
    if roll < 0.8:
        return "".join(chr(rng.randrange(0x20, 0x2FF)) for _ in range(rng.randrange(1, 30)))
    return "".join(chr(rng.randrange(0, 0x10FFFF)) for _ in range(rng.randrange(1, 8)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, with a taste for the shapes Bokeh's deserializer looks for."""
    kinds = 12 if depth < 3 else 6
    kind = rng.randrange(kinds)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308, math.nan, math.inf, -math.inf, rng.random()])
    if kind in (4, 5):
        return random_string(rng)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {random_string(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 8:
        return {"id": rng.choice(["p1001", "p9999", "", random_string(rng)])}
    if kind == 9:
        return {
            "type": "object",
            "name": rng.choice(MODEL_NAMES),
            "id": f"fz{rng.randrange(10**6)}",
            "attributes": {random_string(rng): random_json(rng, depth + 1)},
        }
    if kind == 10:
        return rng.choice(
            [
                {
                    "type": "ndarray",
                    "array": {"type": "bytes", "data": "AAAA"},
                    "shape": [2, 2],
                    "dtype": "float64",
                    "order": "little",
                },
                {
                    "type": "ndarray",
                    "array": [1, 2],
                    "shape": [10**9],
                    "dtype": "int32",
                    "order": "big",
                },
                {"type": "bytes", "data": "!!not base64!!"},
                {"type": "bytes", "data": {"id": "missing-buffer"}},
                {"type": "number", "value": rng.choice(["nan", "-inf", "+inf", "bogus"])},
                {"type": "slice", "start": -5, "stop": 10**12, "step": 0},
                {"type": "map", "entries": [[random_json(rng, depth + 1), 1]]},
                {"type": "set", "entries": [[], {}]},
                {
                    "type": "typed_array",
                    "array": {"type": "bytes", "data": "AAA="},
                    "order": "little",
                    "dtype": "float32",
                },
                {"type": rng.choice(["value", "field", "expr", "symbol", "bogus"])},
            ]
        )
    return [[[random_json(rng, depth + 3)]]]


def nested(depth: int) -> Any:
    """Nested lists ``depth`` deep (kept well below the interpreter's recursion limit)."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def mutate(rng: random.Random, value: Any) -> Any:
    """A copy of ``value`` with one node replaced, removed, retyped or duplicated."""
    value = json.loads(json.dumps(value))
    paths: list[tuple[Any, Any]] = []  # (container, key)
    stack = [value]
    while stack and len(paths) < 400:
        node = stack.pop()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            paths.append((node, key))
            stack.append(child)
    if not paths:
        return random_json(rng)
    container, key = rng.choice(paths)
    roll = rng.random()
    if roll < 0.55:
        container[key] = random_json(rng)
    elif roll < 0.7 and isinstance(container, dict):
        del container[key]
    elif roll < 0.8:
        old = container[key]
        container[key] = (
            str(old) if not isinstance(old, str) else [old] if rng.random() < 0.5 else len(old)
        )
    elif roll < 0.9:
        container[key] = nested(rng.randrange(20, 400))
    elif isinstance(container, dict):
        container[random_string(rng)] = container[key]
    else:
        container.append(container[key])
    return value


def corrupt(rng: random.Random, data: str) -> str:
    """Broken JSON (or, by chance, other JSON): truncated, spliced, or wrapped."""
    pos = rng.randrange(len(data) + 1)
    roll = rng.randrange(7)
    if roll == 0:
        return data[:pos]
    if roll == 1:
        return data[:pos] + rng.choice('{}[]",:\\x\x00 ') + data[pos:]
    if roll == 2:
        return data[:pos] + data[pos + 1 :]
    if roll == 3:
        return data + rng.choice(["}", "]", "x", "{}", " 1", "\n"])
    if roll == 4:
        return rng.choice(["NaN", "Infinity", "-Infinity", "null", "true", "1e999", '"str"'])
    if roll == 5:
        return "[" + data
    return data.replace('"', "'", 1)


# -- fuzz cases --------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    frames: list[WireFrame]
    labels: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class Target:
    """A fuzzed session. A clean one only gets input that leaves its models in place, so the
    valid moves among the fuzz must still succeed there; a dirty one gets everything."""

    token: str
    ids: DemoIds
    clean: bool


class Fuzzer:
    def __init__(self, rng: random.Random, worker: int, honest: DemoIds) -> None:
        self.rng = rng
        self.worker = worker
        self.honest = honest
        self.count = 0
        self.push_content = pushed_document()

    def msgid(self) -> str:
        self.count += 1
        return f"w{self.worker}-{self.count}"

    def header(self, msgtype: str, **extra: Any) -> dict[str, Any]:
        return {"msgid": self.msgid(), "msgtype": msgtype, **extra}

    def random_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)  # from the seed: a run replays byte for byte

    def valid(self, target: Target) -> tuple[dict[str, Any], Any, frozenset[str] | None]:
        """A valid message for the target (header, content, the exact reply type if sure)."""
        rng, ids = self.rng, target.ids
        roll = rng.randrange(5)
        if roll == 0:
            return self.header(PULL_DOC_REQ), {}, frozenset({PULL_DOC_REPLY})
        if roll == 1:
            return self.header(SERVER_INFO_REQ), {}, None
        if roll == 2 and not target.clean:
            return self.header(PUSH_DOC), self.push_content, ONLY_OK
        if roll == 3:
            return self.header(PATCH_DOC), {"events": [click_event(ids)]}, ONLY_OK
        value = round(rng.uniform(0.1, 5.0), 2)
        return self.header(PATCH_DOC), {"events": [slider_event(ids, value)]}, ONLY_OK

    def case(self, target: Target) -> Case:
        names = [name for name, weight in CASE_WEIGHTS for _ in range(weight)]
        name = self.rng.choice(names)
        if name in DIRTY_ONLY and target.clean:
            name = "valid"
        case: Case = getattr(self, "case_" + name.replace("-", "_"))(target)
        if not target.clean:
            # anything may have happened to a dirty document: its models may be gone (Bokeh
            # then drops patches to them silently, with OK) or replaced; no exact expectations
            case.labels = {}
        return case

    def _message(
        self,
        name: str,
        header: dict[str, Any],
        content: Any,
        label: frozenset[str] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Case:
        labels = {header["msgid"]: label} if label else {}
        return Case(name, bokeh_frames(header, {}, content, buffers), labels)

    def _patch(self, name: str, events: list[Any], label: frozenset[str] | None = None) -> Case:
        return self._message(name, self.header(PATCH_DOC), {"events": events}, label)

    # each case_* builds one case; the oracle works out what the server must answer

    def case_valid(self, target: Target) -> Case:
        header, content, label = self.valid(target)
        return self._message("valid", header, content, label if target.clean else None)

    def case_fragmented(self, target: Target) -> Case:
        """A valid message whose frames are split into websocket fragments (legal)."""
        header, content, label = self.valid(target)
        frames = []
        for frame in bokeh_frames(header, {}, content):
            cut = self.rng.randrange(len(frame.payload) + 1)
            head, tail = frame.payload[:cut], frame.payload[cut:]
            frames += [WireFrame(frame.opcode, head, fin=False), WireFrame(CONTINUATION, tail)]
        labels = {header["msgid"]: label} if label and target.clean else {}
        return Case("fragmented", frames, labels)

    def case_unknown_msgtype(self, target: Target) -> Case:
        msgtype = self.rng.choice(
            ["ACK", "OK", "ERROR", "PULL-DOC-REPLY", "SERVER-INFO-REPLY", "pull-doc-req", ""]
            + [random_string(self.rng) for _ in range(3)]
        )
        return self._message("unknown-msgtype", self.header(msgtype), {}, ONLY_ERROR)

    def case_unknown_model(self, target: Target) -> Case:
        event = slider_event(target.ids, 1.5)
        event["model"] = {"id": self.rng.choice(["nope", "", "p0", random_string(self.rng)])}
        return self._patch("unknown-model", [event], ONLY_ERROR)

    def case_unknown_attribute(self, target: Target) -> Case:
        odd = ["no_such_property", "__class__", "__dict__", "id", "document", "_property_values"]
        attr = self.rng.choice([*odd, "zz_" + random_string(self.rng)])
        model = self.rng.choice(target.ids.all())
        event = {"kind": "ModelChanged", "model": {"id": model}, "attr": attr, "new": 1}
        # Bokeh ignores attributes its models lack (BokehJS may send client-only ones): it logs
        # a warning and answers OK; nothing reaches the document
        return self._patch("unknown-attribute", [event], ONLY_OK if target.clean else None)

    def case_wrong_type(self, target: Target) -> Case:
        value = self.rng.choice(["abc", [], {}, None, [1, 2], {"id": target.ids.status}, "1.5"])
        return self._patch("wrong-type", [slider_event(target.ids, value)], ONLY_ERROR)

    def case_foreign_document(self, target: Target) -> Case:
        """Events naming the models of the honest session's document."""
        honest = self.honest
        event = self.rng.choice(
            [
                slider_event(honest, 4.9),
                click_event(honest),
                {
                    "kind": "ModelChanged",
                    "model": {"id": honest.status},
                    "attr": "text",
                    "new": "hijacked",
                },
                {
                    "kind": "ColumnsStreamed",
                    "model": {"id": honest.source},
                    "attr": "data",
                    "data": {"type": "map", "entries": [["x", [1]], ["y", [2]]]},
                },
            ]
        )
        return self._patch("foreign-document", [event], ONLY_ERROR)

    def case_huge_string(self, target: Target) -> Case:
        """A string of up to 200 kB, inside the size limit: fine as text, wrong as a number."""
        chunk = "".join(self.rng.choice('ab<>&"\\é\n') for _ in range(64))
        size = self.rng.randrange(10_000, LIMIT - 1000)  # bytes, as JSON on the wire
        huge = chunk * (size // (len(dumps(chunk)) - 2))
        ids = target.ids
        if self.rng.random() < 0.5:
            event = {
                "kind": "ModelChanged",
                "model": {"id": ids.status},
                "attr": "text",
                "new": huge,
            }
            return self._patch("huge-string", [event], ONLY_OK if target.clean else None)
        if self.rng.random() < 0.5:
            return self._patch("huge-string", [slider_event(ids, huge)], ONLY_ERROR)
        return self._message("huge-string", self.header(huge), {}, ONLY_ERROR)

    def case_mutated_content(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == PUSH_DOC and target.clean:
            header["msgtype"] = PATCH_DOC
        return self._message("mutated-content", header, mutate(self.rng, content))

    def case_mutated_header(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        header = mutate(self.rng, header)
        if isinstance(header, dict) and header.get("msgtype") == PUSH_DOC:
            header["msgtype"] = PULL_DOC_REQ  # pushes only where expected
        return self._message("mutated-header", header, content)

    def case_broken_json(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == PUSH_DOC and target.clean:
            header["msgtype"] = PULL_DOC_REQ
        frames = bokeh_frames(header, {}, content)
        n = self.rng.randrange(3)
        frames[n] = text(corrupt(self.rng, frames[n].payload.decode()))
        return Case("broken-json", frames)

    def case_binary_out_of_place(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == PUSH_DOC:
            header["msgtype"] = PULL_DOC_REQ
        frames = bokeh_frames(header, {}, content)
        n = self.rng.randrange(len(frames) + 1)
        if n == len(frames):
            frames.append(binary(self.random_bytes(self.rng.randrange(0, 64))))  # a stray buffer
        else:
            frames[n] = binary(frames[n].payload)
        return Case("binary-out-of-place", frames)

    def case_num_buffers_lie(self, target: Target) -> Case:
        """A header announcing more or fewer buffers than follow, or a bad count."""
        header, content, _ = self.valid(target)
        if header["msgtype"] == PUSH_DOC:
            header["msgtype"] = PATCH_DOC
        sent = self.rng.randrange(3)
        header["num_buffers"] = self.rng.choice(
            [sent + 1, sent + 2, max(0, sent - 1), -1, 10**6, "2", 1.0, None, True]
        )
        buffers = [self.random_bytes(self.rng.randrange(1, 32)) for _ in range(sent)]
        return Case("num-buffers-lie", bokeh_frames(header, {}, content, buffers))

    def case_bad_buffer_header(self, target: Target) -> Case:
        header = self.header(PATCH_DOC, num_buffers=1)
        buffer_header = self.rng.choice(
            [{"id": 1}, {"id": "a", "extra": 1}, [], "a", {}, {"ID": "a"}]
        )
        frames = bokeh_frames(header, {}, {"events": []})
        frames += [text(dumps(buffer_header)), binary(b"\x00")]
        return Case("bad-buffer-header", frames)

    def case_stream_events(self, target: Target) -> Case:
        """Column streams and patches with random data, on the session's own source."""
        ids, rng = target.ids, self.rng
        data = {"type": "map", "entries": [["x", random_json(rng)], ["y", [rng.random()]]]}
        index = rng.choice([0, -1, 10**6, "a", {"type": "slice", "start": 0, "stop": 10**9}])
        event = rng.choice(
            [
                {
                    "kind": "ColumnsStreamed",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "data": data,
                    "rollover": rng.choice([None, -1, 0, 3, 10**9, "x"]),
                },
                {
                    "kind": "ColumnsPatched",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "patches": {"type": "map", "entries": [["y", [[index, 1.0]]]]},
                },
                {
                    "kind": "ColumnDataChanged",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "data": data,
                    "cols": rng.choice([None, ["x"], ["nope"], "x"]),
                },
                {
                    "kind": rng.choice(["NoSuchEvent", "", "ModelChanged"]),
                    "model": {"id": ids.slider},
                },
            ]
        )
        return self._patch("stream-events", [event])

    def case_document_events(self, target: Target) -> Case:
        """Roots and titles: legal changes to the structure of the (dirty) session's document."""
        rng = self.rng
        event = rng.choice(
            [
                {"kind": "RootAdded", "model": random_json(rng)},
                {
                    "kind": "RootAdded",
                    "model": {
                        "type": "object",
                        "name": "Div",
                        "id": f"fz{rng.randrange(10**6)}",
                        "attributes": {"text": "root"},
                    },
                },
                {"kind": "RootRemoved", "model": {"id": rng.choice(target.ids.all())}},
                {"kind": "TitleChanged", "title": random_json(rng)},
                {"kind": "TitleChanged", "title": random_string(rng)},
            ]
        )
        return self._patch("document-events", [event])

    def case_mutated_push(self, target: Target) -> Case:
        content = mutate(self.rng, self.push_content)
        return self._message("mutated-push", self.header(PUSH_DOC), content)

    def case_random_frames(self, target: Target) -> Case:
        frames = []
        for _ in range(self.rng.randrange(1, 4)):
            if self.rng.random() < 0.5:
                frames.append(text(dumps(random_json(self.rng))))
            else:
                frames.append(binary(self.random_bytes(self.rng.randrange(0, 100))))
        return Case("random-frames", frames)

    def case_oversized(self, target: Target) -> Case:
        """Beyond --websocket-max-message-size: one huge frame, or a message of many frames."""
        header = self.header(PATCH_DOC)
        if self.rng.random() < 0.5:
            event = {"kind": "ModelChanged", "model": {"id": target.ids.status}, "attr": "text"}
            event["new"] = "x" * (LIMIT + self.rng.randrange(1, 5000))
            return self._patch("oversized", [event])
        header["num_buffers"] = 2
        half = LIMIT // 2 + self.rng.randrange(1, 1000)
        return Case("oversized", bokeh_frames(header, {}, {"events": []}, [b"\0" * half] * 2))

    def case_invalid_utf8(self, target: Target) -> Case:
        header = self.header(PULL_DOC_REQ)
        frames = bokeh_frames(header, {}, {})
        n = self.rng.randrange(3)
        frames[n] = text(
            frames[n].payload[:-1] + self.rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"])
        )
        return Case("invalid-utf8", frames)

    def case_bad_frame(self, target: Target) -> Case:
        """Frames that break RFC 6455 itself: the websocket layer must close with 1002."""
        payload = b'{"msgid":"x","msgtype":"PULL-DOC-REQ"}'
        frame = self.rng.choice(
            [
                WireFrame(TEXT, payload, rsv=4, violation=1002),  # RSV1 without an extension
                WireFrame(TEXT, payload, rsv=2, violation=1002),
                WireFrame(0x3, payload, violation=1002),  # a reserved data opcode
                WireFrame(0xB, b"", violation=1002),  # a reserved control opcode
                WireFrame(TEXT, payload, masked=False, violation=1002),  # clients must mask
                WireFrame(CONTINUATION, payload, violation=1002),  # continues nothing
                WireFrame(PING, b"x" * 126, violation=1002),  # control frames are <= 125 bytes
                WireFrame(PING, b"x", fin=False, violation=1002),  # and never fragmented
                WireFrame(CLOSE, (999).to_bytes(2, "big"), violation=1002),  # an invalid code
                WireFrame(CLOSE, b"\x03", violation=1002),  # a one-byte close payload
            ]
        )
        return Case("bad-frame", [frame])

    def case_deeply_nested(self, target: Target) -> Case:
        """JSON nested thousands deep (depths between ~500 and ~1000 are avoided: there the
        interpreter's recursion limit depends on the stack depth of the caller)."""
        header = self.header(PULL_DOC_REQ)
        frames = bokeh_frames(header, {}, {})
        depth = self.rng.randrange(5_000, 100_000)
        frames[self.rng.randrange(3)] = text(self.rng.choice(["[", '{"a":']) * depth)
        return Case("deeply-nested", frames)


CASE_WEIGHTS = [
    ("valid", 12),
    ("fragmented", 2),
    ("unknown-msgtype", 4),
    ("unknown-model", 4),
    ("unknown-attribute", 4),
    ("wrong-type", 4),
    ("foreign-document", 5),
    ("huge-string", 2),
    ("mutated-content", 14),
    ("mutated-header", 4),
    ("broken-json", 3),
    ("binary-out-of-place", 2),
    ("num-buffers-lie", 2),
    ("bad-buffer-header", 1),
    ("stream-events", 5),
    ("document-events", 3),
    ("mutated-push", 3),
    ("random-frames", 2),
    ("oversized", 1),
    ("invalid-utf8", 1),
    ("bad-frame", 1),
    ("deeply-nested", 1),
]
DIRTY_ONLY = {"document-events", "mutated-push"}
