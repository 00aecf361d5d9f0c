"""Test app for the load and slow-reader tests (tests/test_load.py).

A periodic callback streams ``rows`` rows into the ``stream`` source every ``period`` ms; each
row carries a sequence number, so a reader can tell whether it missed any. Writing ``echo``'s
text makes a Python callback copy it into ``reply``: a round trip through the server.

Request arguments: ``period`` (milliseconds, default 10; 0 streams nothing) and ``rows``
(default 200).
"""

import random

from bokeh.io import curdoc
from bokeh.models import ColumnDataSource, Div

doc = curdoc()
arguments = doc.session_context.request.arguments


def argument(name, default):
    return int(arguments[name][0]) if name in arguments else default


period, rows = argument("period", 10), argument("rows", 200)
source = ColumnDataSource(data={"seq": [], "value": [], "label": []}, name="stream")
echo = Div(text="", name="echo")
reply = Div(text="", name="reply")
echo.on_change("text", lambda attr, old, new: setattr(reply, "text", f"echo: {new}"))
ticks = 0


def tick():
    global ticks
    first = ticks * rows
    seq = list(range(first, first + rows))
    source.stream(
        {
            "seq": seq,
            "value": [random.random() for _ in seq],
            "label": [f"row {n:010d} of a stream that a slow reader never reads" for n in seq],
        },
        rollover=5 * rows,  # the document stays small; only undelivered messages could grow
    )
    ticks += 1


if period > 0:
    doc.add_periodic_callback(tick, period)
doc.add_root(echo)
doc.add_root(reply)
doc.add_root(source)
