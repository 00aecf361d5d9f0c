"""Streaming bench app: a periodic callback streams one point every 50 ms (20 updates/s)."""

import random

from bokeh.io import curdoc
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

source = ColumnDataSource(data={"x": [0], "y": [0.0]})

plot = figure(title="stream", height=300, width=500)
plot.line("x", "y", source=source)

count = 0


def tick():
    global count
    count += 1
    source.stream({"x": [count], "y": [random.random()]}, rollover=200)


curdoc().add_periodic_callback(tick, 50)
curdoc().add_root(plot)
curdoc().title = "bench stream"
