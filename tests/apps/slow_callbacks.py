"""An app whose handlers block the event loop (time.sleep), for tests of the slow-callback log.

A slider's on_change handler sleeps 0.3 s; a button's handler sets the slider (so the slow
handler runs inside it and must be the one named); a periodic callback every 100 ms sleeps
0.3 s while the status Div's tags hold "slow" (empty until the test sets them); with
``?slow_start=1``, a timeout callback sleeps 0.3 s 50 ms after the session starts.
"""

import time

from bokeh.io import curdoc
from bokeh.models import Button, Div, Slider

slider = Slider(start=0, end=10, value=0, step=1, name="slider")
button = Button(label="nudge", name="nudge")
status = Div(text="", name="status", tags=[])


def slow_update(attr, old, new):
    time.sleep(0.3)
    status.text = f"value {new}"


def nudge():
    slider.value = slider.value + 1


def slow_tick():
    if "slow" in status.tags:
        status.tags = []
        time.sleep(0.3)


slider.on_change("value", slow_update)
button.on_click(nudge)


def slow_start():
    time.sleep(0.3)


curdoc().add_periodic_callback(slow_tick, 100)
if curdoc().session_context.request.arguments.get("slow_start"):
    curdoc().add_timeout_callback(slow_start, 50)
curdoc().add_root(status)
curdoc().add_root(slider)
curdoc().add_root(button)
