"""Scale bench app: the small app's document; with ``?stream=1`` a 50 ms periodic callback
streams one point (20 updates/s), as in the streaming app.

The scale workload opens thousands of these and streams to a tenth of them: the others are
idle tabs that the server must hold while it serves the busy ones.
"""

import random

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import figure

x = np.linspace(0, 10, 100)
source = ColumnDataSource(data={"x": x, "y": np.sin(x)})
stream = ColumnDataSource(data={"x": [0], "y": [0.0]})

plot = figure(title="scale", height=300, width=500)
plot.scatter("x", "y", source=source, size=6)
plot.line("x", "y", source=stream)

slider = Slider(title="frequency", value=1.0, start=0.0, end=1e9, step=1.0, name="slider")
div = Div(text="value=1.0", name="div")
count = 0


def tick():
    global count
    count += 1
    stream.stream({"x": [count], "y": [random.random()]}, rollover=200)


doc = curdoc()
if b"1" in doc.session_context.request.arguments.get("stream", []):
    doc.add_periodic_callback(tick, 50)
doc.add_root(column(slider, div, plot))
doc.title = "bench scale"
