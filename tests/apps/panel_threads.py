"""A Panel app whose callbacks run on Panel's thread pool, ``pn.extension(nthreads=2)``
(tests/test_panel.py): a threaded ``pn.state.onload`` and a button handler, both off the loop."""

import threading

import panel as pn

pn.extension(nthreads=2)

status = pn.pane.Str("waiting")
press = pn.widgets.Button(label="Work")


def where() -> str:
    return "thread" if threading.current_thread() is not threading.main_thread() else "loop"


def loaded() -> None:
    status.object = f"loaded on a {where()}"


def work(_: object) -> None:
    status.object = f"worked {press.clicks} on a {where()}"


press.on_click(work)
pn.state.onload(loaded, threaded=True)

pn.Column(status, press).servable(title="Panel threads")
