"""The compatibility table: the browser-test apps under ``bokeh serve``, app_server and (Panel
apps) ``panel serve``, as a user runs them (one server per app), behind a firewall (Chromium
refuses every request off 127.0.0.1; a second loopback origin stands in for a CDN).

``make compat`` (``pytest tests/compat_run.py`` on each leg) records, per app and server, whether
the page renders, whether a widget round-trips through Python, and the console errors, in
``tests/compat_results.json``, and writes COMPATIBILITY.md from it. ``tests/test_compat.py``
checks that COMPATIBILITY.md shows the recorded run, for every app here.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "COMPATIBILITY.md"
RESULTS = Path(__file__).resolve().parent / "compat_results.json"
HEADER = """# Compatibility

Written by `make compat` (tests/compat_run.py) from tests/compat_results.json: do not edit.

The apps of the browser tests (tests/compat.py), each run alone as a user runs it (`bokeh serve
app.py`, `app-server serve app.py`, `panel serve app.py`), in Chromium behind a firewall (every
request off 127.0.0.1 refused; another loopback origin stands in for a CDN): whether the page
renders, whether a widget's change goes through Python and back, and the console errors. The
run fails if app_server does less than `bokeh serve` for an app.
"""

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SERVERS = ("bokeh serve", "app_server", "panel serve")
HEADS = ("`bokeh serve`", "app_server", "`panel serve`")


def _fill(page: Page, text: str) -> None:
    box = page.get_by_role("textbox")
    box.fill(text)
    box.press("Enter")


def demo(page: Page) -> None:
    page.get_by_role("button", name="Reset").click()
    expect(page.get_by_text("frequency = 1.0, resets: 1")).to_be_visible()


def panel_widgets(page: Page) -> None:
    _fill(page, "bob")
    expect(page.get_by_text("hello bob hello bob")).to_be_visible()
    page.get_by_role("button", name="Shout").click()
    expect(page.get_by_text("hello bob hello bob!")).to_be_visible()


def panel_template(page: Page) -> None:
    page.get_by_role("combobox").select_option("blue")
    expect(page.get_by_text("blue at 2.0")).to_be_visible()


def panel_tabulator(page: Page) -> None:
    minimum = page.locator("input.bk-input").first
    minimum.fill("3")
    minimum.press("Enter")
    expect(page.get_by_text("total: 7")).to_be_visible()


def panel_periodic(page: Page) -> None:
    expect(page.get_by_text("loaded", exact=True)).to_be_visible()  # pn.state.onload ran
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"stopped at \d+"))).to_be_visible()


def panel_threads(page: Page) -> None:
    page.get_by_role("button", name="Work").click()
    expect(page.get_by_text("worked 1 on a thread")).to_be_visible()


@dataclass(frozen=True)
class CompatApp:
    """One row: an app of tests/apps (or examples/), how to open it and what it shows."""

    name: str  # the row's name
    path: str  # the app, from the repository root
    uses: str  # what it exercises, for the table
    shows: str  # text on the page once the document has rendered
    round_trip: Callable[[Page], None] | None  # a widget's change through Python and back
    panel: bool = False  # a Panel app: also under panel serve
    query: str = ""  # the page's query string ({cdn}: the stand-in CDN's URL)
    embed: bool = False  # opened through server_document (autoload.js) in another site's page

    @property
    def route(self) -> str:
        return "/" + Path(self.path).stem


APPS = (
    CompatApp("demo", "examples/demo.py", "Bokeh widgets, a plot", "frequency = 1.0", demo),
    CompatApp(
        "ext_app",
        "tests/apps/ext_app.py",
        "a model of a pre-built extension package",
        "hello from an extension",
        None,
    ),
    CompatApp(
        "ts_model",
        "tests/apps/ts_model.py",
        "a TypeScript model, its script from another origin",
        "hello from TypeScript (other origin)",
        None,
    ),
    CompatApp(
        "cdn_assets",
        "tests/apps/cdn_assets.py",
        "a template loading CSS, a web font, a script and an iframe from another origin",
        "styled from elsewhere",
        None,
        query="?cdn={cdn}",
    ),
    CompatApp(
        "panel_widgets",
        "tests/apps/panel_widgets.py",
        "Panel widgets, pn.bind, .servable()",
        "hello ann hello ann",
        panel_widgets,
        panel=True,
    ),
    CompatApp(
        "panel_widgets embedded",
        "tests/apps/panel_widgets.py",
        "the same, in another site's page (server_document)",
        "hello ann hello ann",
        panel_widgets,
        panel=True,
        embed=True,
    ),
    CompatApp(
        "panel_template",
        "tests/apps/panel_template.py",
        "FastListTemplate",
        "red at 2.0",
        panel_template,
        panel=True,
    ),
    CompatApp(
        "panel_tabulator",
        "tests/apps/panel_tabulator.py",
        "Tabulator filtered from Python",
        "total: 9",
        panel_tabulator,
        panel=True,
    ),
    CompatApp(
        "panel_periodic",
        "tests/apps/panel_periodic.py",
        "pn.state.onload, periodic callbacks",
        "Ticks",
        panel_periodic,
        panel=True,
    ),
    CompatApp(
        "panel_threads",
        "tests/apps/panel_threads.py",
        "callbacks on Panel's threads (nthreads=2)",
        "Work",
        panel_threads,
        panel=True,
    ),
)


def servers_of(app: CompatApp) -> tuple[str, ...]:
    return SERVERS if app.panel else SERVERS[:2]


@dataclass
class Cell:
    """One app under one server, as Chromium saw it."""

    renders: bool
    round_trip: bool | None  # None: the app has no widget
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions

    def text(self) -> str:
        if not self.renders:
            shown = "does not render"
        elif self.round_trip is None:
            shown = "renders (no widget)"
        else:
            shown = "renders, round-trips" if self.round_trip else "renders, no round-trip"
        count = len(self.errors)
        if count:
            shown += f"; {count} console error{'s' if count > 1 else ''}"
        return ("✅ " if self.renders and self.round_trip is not False else "❌ ") + shown

    def at_least_as_good_as(self, other: Cell) -> bool:
        """Renders and round-trips wherever ``other`` does, with no error ``other`` lacks."""
        return (
            (self.renders or not other.renders)
            and (self.round_trip is not False or other.round_trip is False)
            and set(self.errors) <= set(other.errors)
        )


def leg() -> str:
    """The versions a run was made with (one table per leg)."""
    try:
        panel = f", Panel {version('panel')}"
    except PackageNotFoundError:
        panel = ""
    python = ".".join(platform.python_version_tuple()[:2])
    return f"bokeh {version('bokeh')}{panel}, Python {python}"


def load_results() -> dict[str, dict[str, dict[str, Any]]]:
    """leg -> app name -> server -> cell (as recorded)."""
    if not RESULTS.exists():
        return {}
    data: dict[str, dict[str, dict[str, Any]]] = json.loads(RESULTS.read_text())
    return data


def save_results(leg_name: str, cells: dict[str, dict[str, Cell]]) -> None:
    results = load_results()
    results[leg_name] = {
        app: {server: asdict(cell) for server, cell in by_server.items()}
        for app, by_server in cells.items()
    }
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """COMPATIBILITY.md: per leg, a table of apps x servers, and the errors seen."""
    lines = [HEADER.rstrip()]
    for leg_name, by_app in sorted(results.items(), key=lambda item: _numbers(item[0])):
        lines += ["", f"## {leg_name}", ""]
        lines += ["| app | uses | " + " | ".join(HEADS) + " |", "|---|---|---|---|---|"]
        notes: list[str] = []
        for app in APPS:
            cells = {server: Cell(**cell) for server, cell in by_app.get(app.name, {}).items()}
            row = [f"`{app.name}`", app.uses]
            for server in SERVERS:
                cell = cells.get(server)
                row.append("—" if cell is None else cell.text())
                if cell is not None:
                    notes += [f"{app.name}, {server}: {error}" for error in cell.errors]
            lines.append("| " + " | ".join(row) + " |")
        if notes:
            lines += ["", "Console errors:", ""]
            lines += [f"- {_escaped(note)}" for note in notes]
    return "\n".join(lines) + "\n"


def _numbers(leg_name: str) -> list[int]:
    """'bokeh 3.9.2, ...' before 'bokeh 3.10.2, ...'."""
    return [int(number) for number in re.findall(r"\d+", leg_name)]


def _escaped(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def write_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    TABLE.write_text(table(results))


def normalized(error: str, addresses: dict[str, str]) -> str:
    """An error line with the run's own addresses (random ports) and ids (blob: URLs) named."""
    for address, name in addresses.items():
        error = error.replace(address, name)
    error = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", error)
    return UUID.sub("<uuid>", error)[:300]
