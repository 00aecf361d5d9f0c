"""COMPATIBILITY.md is the table ``make compat`` wrote from its last run
(tests/compat_results.json), and that run covered every app of tests/compat.py under every
server it applies to, on this leg's bokeh."""

from __future__ import annotations

from importlib.metadata import version

from tests.compat import APPS, TABLE, Cell, load_results, servers_of, table


def test_compatibility_md_shows_the_recorded_run() -> None:
    assert TABLE.read_text() == table(load_results()), "run `make compat` (do not edit it)"


def test_the_run_covers_every_app_and_server_on_each_leg() -> None:
    results = load_results()
    assert results, "run `make compat`"
    for leg, by_app in results.items():
        assert set(by_app) == {app.name for app in APPS}, (leg, "run `make compat`")
        for app in APPS:
            assert set(by_app[app.name]) == set(servers_of(app)), (leg, app.name)
            for cell in by_app[app.name].values():
                Cell(**cell)  # the recorded fields are the cells' own


def test_this_legs_bokeh_was_recorded() -> None:
    minor = ".".join(version("bokeh").split(".")[:2])
    legs = load_results()
    assert any(leg.startswith(f"bokeh {minor}.") for leg in legs), (minor, list(legs))


def test_app_server_did_what_bokeh_serve_did_in_the_recorded_run() -> None:
    for leg, by_app in load_results().items():
        for name, cells in by_app.items():
            ours, bokehs = Cell(**cells["app_server"]), Cell(**cells["bokeh serve"])
            assert ours.at_least_as_good_as(bokehs), (leg, name)
