"""A mounted app_server changes nothing process-wide unless asked; two apps share no state."""

from __future__ import annotations

import gc

from bokeh.document import Document
from bokeh.models import Div
from starlette.testclient import TestClient

from app_server import create_app
from app_server.server import AppServer
from app_server.testing import AppTestClient


def hello(doc: Document) -> None:
    doc.add_root(Div(text="hello"))


def server_of(client: TestClient) -> AppServer:
    return client.app.state.server  # type: ignore[attr-defined, no-any-return]


def test_a_mounted_app_leaves_the_garbage_collector_alone() -> None:
    frozen = gc.get_freeze_count()
    with TestClient(create_app({"/hello": hello})) as client:
        assert client.get("/hello").status_code == 200
        assert not server_of(client).memory.enabled
        assert gc.get_freeze_count() == frozen


def test_asked_to_manage_memory_it_freezes_the_startup_heap_and_thaws_it_at_shutdown() -> None:
    with TestClient(create_app({"/hello": hello}, manage_process_memory=True)) as client:
        assert client.get("/hello").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


async def test_discards_schedule_collections_only_when_memory_is_managed() -> None:
    for managed in (False, True):
        async with AppTestClient(hello, manage_process_memory=managed) as client:
            session = await client.open_session()
            await client.close_session(session)
            assert (client.server.memory._timer is not None) is managed


def test_two_apps_in_one_process_share_no_caches_or_counters() -> None:
    first, second = create_app({"/a": hello}), create_app({"/b": hello})
    with TestClient(first) as a, TestClient(second) as b:
        for _ in range(2):  # the first page runs the app code; the second uses a bundle
            assert a.get("/a").status_code == 200
        one, two = server_of(a), server_of(b)
        assert one.page_bundles is not two.page_bundles
        assert one.static_versions is not two.static_versions
        assert one.metrics is not two.metrics
        assert one.metrics.sessions_created == {"/a": 1}
        assert two.metrics.sessions_created == {"/b": 0}
        assert one.page_bundles._bundles and not two.page_bundles._bundles
