"""Panel's periodic callbacks and ``pn.state.onload`` (tests/test_panel.py).

``pn.state.onload`` runs once the page has rendered; ``pn.state.add_periodic_callback`` ticks a
counter that the Stop button ends.
"""

import panel as pn

pn.extension()

status = pn.pane.Str("loading", name="status")
ticks = pn.widgets.IntInput(label="Ticks", value=0, disabled=True)
stop = pn.widgets.Button(label="Stop")


def tick() -> None:
    ticks.value += 1


callback = pn.state.add_periodic_callback(tick, period=100, start=False)


def loaded() -> None:
    status.object = "loaded"
    callback.start()


def halt(_: object) -> None:
    callback.stop()
    status.object = f"stopped at {ticks.value}"


stop.on_click(halt)
pn.state.onload(loaded)

pn.Column(status, ticks, stop).servable(title="Panel ticker")
