"""The cost floor: what the apps, the page and the serialization cost in-process, with no server.

Run as ``python -m bench.floor [--quick]`` (the bench runs it in a fresh subprocess); it
prints one JSON object. Times are CPU time (``time.process_time``) per operation; memory is
the RSS growth per live document, measured first, in this fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers import ScriptHandler
from bokeh.core.types import ID
from bokeh.document import Document
from bokeh.document.callbacks import invoke_with_curdoc
from bokeh.embed.bundle import bundle_for_objs_and_resources
from bokeh.embed.elements import html_page_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.resources import Resources
from bokeh.util.token import generate_jwt_token, generate_session_id

from app_server import protocol

from .servers import APPS_DIR

__all__ = ["measure_floor"]


def _application(name: str) -> Application:
    return Application(ScriptHandler(filename=str(APPS_DIR / f"{name}.py")))


def _cpu_ms(func: Callable[[], Any], repeat: int) -> float:
    """Median CPU milliseconds of ``func()`` over ``repeat`` runs."""
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        func()
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def document_bytes(app: Application, count: int) -> float:
    """Memory per live document of ``app``: the Python objects and numpy data it holds.

    Traced by tracemalloc: RSS growth under-counts it (the documents reuse memory that the
    warm-up freed), which would show as the servers' overhead.
    """
    warm = [app.create_document() for _ in range(2)]
    for doc in warm:
        protocol.encode(protocol.pull_doc_reply("m0", doc))
    del warm
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        docs = [app.create_document() for _ in range(count)]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        del docs
    finally:
        tracemalloc.stop()
    gc.collect()
    return grown / count


class _Receiver:
    """Stands for the server session that a document dispatches its changes to."""

    def _document_patched(self, event: Any) -> None:
        pass


def _release_without_gc(document: Document, receiver: _Receiver) -> None:
    """``Document.destroy`` minus its ``gc.collect()`` (bokeh 3.9/3.10 internals)."""
    document.remove_on_change(receiver)
    document._roots = []
    document._session_context = None
    document.callbacks.destroy()
    document.models.destroy()
    document.modules.destroy()  # its leak check runs gc.get_referrers: a whole-heap scan


def _with_receiver(document: Document, receiver: _Receiver) -> Document:
    document.callbacks.on_change_dispatch_to(receiver)
    return document


def _pulled(document: Document) -> Document:
    """``document`` once a peer has pulled it: its models are synced."""
    protocol.pull_doc_reply("m0", document)
    return document


def _streamer(document: Document) -> Callable[[], None]:
    """One run of ``document``'s periodic callback and the encoding of the change it makes."""
    tick = next(iter(document.session_callbacks)).callback
    events: list[Any] = []
    document.on_change(events.append)

    def streamed() -> None:
        events.clear()
        invoke_with_curdoc(document, tick)
        for event in events:
            protocol.encode(protocol.patch_doc([event], document))

    return streamed


def _rhythm_ms(stream: Application, sessions: int, ticks: int, period: float = 0.05) -> float:
    """CPU per streamed point at the fan-out's rhythm: ``sessions`` documents stream a point
    every ``period`` seconds, all in one pass of an asyncio loop that sleeps in between (the
    cheapest way any server can schedule them). While the process sleeps the CPU's caches go
    cold, so each point costs more than back to back (twice as much at 50 ms)."""
    streamers = [_streamer(_pulled(stream.create_document())) for _ in range(sessions)]

    async def run() -> float:
        loop = asyncio.get_running_loop()
        deadline, started = loop.time(), 0.0
        for tick in range(ticks + 2):
            if tick == 2:  # the first passes warm up
                started = time.process_time()
            deadline += period
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            for streamed in streamers:
                streamed()
        return (time.process_time() - started) * 1000 / (ticks * sessions)

    return asyncio.run(run())


def measure_floor(quick: bool = False) -> dict[str, float]:
    small, heavy, stream = _application("small"), _application("heavy"), _application("stream")
    result: dict[str, float] = {}
    # Memory first, while this process is fresh.
    result["small_doc_kb"] = document_bytes(small, 4 if quick else 8) / 1024
    result["heavy_doc_kb"] = document_bytes(heavy, 2 if quick else 4) / 1024

    repeat = 3 if quick else 5
    resources = Resources(mode="server", root_url="/")
    docs: list[Document] = []

    def app_code() -> None:
        # the handlers alone: Bokeh's checks (Document.validate) are optional, timed below
        document = Document()
        for handler in small.handlers:
            handler.modify_document(document)
        docs.append(document)

    result["session_app_ms"] = _cpu_ms(app_code, repeat)
    doc = docs[-1]
    result["validate_ms"] = _cpu_ms(doc.validate, repeat)

    bundle = bundle_for_objs_and_resources(None, resources)  # the same for every page

    def page() -> None:
        session_id = generate_session_id()
        token = generate_jwt_token(session_id, extra_payload={"headers": {}, "cookies": {}})
        item = RenderItem(token=token, elementid=ID("root"), use_for_title=True)
        html_page_for_render_items(bundle, {}, [item], None)

    result["session_page_ms"] = _cpu_ms(page, repeat)
    result["session_serialize_ms"] = _cpu_ms(
        lambda: protocol.encode(protocol.pull_doc_reply("m0", doc)), repeat
    )
    result["bokeh_serialize_ms"] = _cpu_ms(doc.to_json, repeat)
    result["session_floor_ms"] = (
        result["session_app_ms"] + result["session_page_ms"] + result["session_serialize_ms"]
    )
    # Discarding a session: bokeh's Document.destroy runs a full gc.collect() each time.
    receiver = _Receiver()
    to_destroy = [_with_receiver(small.create_document(), receiver) for _ in range(repeat)]
    result["destroy_gc_ms"] = _cpu_ms(lambda: to_destroy.pop().destroy(receiver), repeat)
    to_release = [_with_receiver(small.create_document(), receiver) for _ in range(repeat)]
    result["destroy_nogc_ms"] = _cpu_ms(
        lambda: _release_without_gc(to_release.pop(), receiver), repeat
    )
    result["get_referrers_ms"] = _cpu_ms(lambda: gc.get_referrers(small), repeat)
    del docs[:-1]

    # One round trip: apply the slider's PATCH-DOC, run the callback, encode its changes in
    # one PATCH-DOC, as a server does for a peer that has pulled the document (pulled here
    # too: a patch then references the models the peer has rather than checking each one)
    patch_doc = _pulled(small.create_document())
    slider = patch_doc.select_one({"name": "slider"})
    events: list[Any] = []
    patch_doc.on_change(events.append)
    counter = iter(range(2, 10**9))

    def round_trip() -> None:
        value = float(next(counter))
        content = {
            "events": [
                {"kind": "ModelChanged", "model": {"id": slider.id}, "attr": "value", "new": value}
            ]
        }
        incoming = protocol.patch_of(protocol.make_message(protocol.PATCH_DOC, content))
        events.clear()
        invoke_with_curdoc(patch_doc, lambda: patch_doc.apply_json_patch(incoming, setter="x"))
        changes = [event for event in events if getattr(event, "setter", None) != "x"]
        protocol.encode(protocol.patch_doc(changes, patch_doc))

    result["patch_floor_ms"] = _cpu_ms(round_trip, 50 if quick else 400)

    # One streamed point: the periodic callback and the PATCH-DOC it produces.
    streamed = _streamer(_pulled(stream.create_document()))
    result["stream_floor_ms"] = _cpu_ms(streamed, 100 if quick else 1000)
    result["stream_rhythm_floor_ms"] = _rhythm_ms(stream, 20, 10 if quick else 60)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.floor")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    json.dump(measure_floor(args.quick), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
