"""Small bench app: one figure with 100 points, a slider whose callback changes the data and a div.

The callback sets ``div.text`` last, to ``value=<slider value>``: the load generator waits for
that text to know that the round trip is complete.
"""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import figure

x = np.linspace(0, 10, 100)
source = ColumnDataSource(data={"x": x, "y": np.sin(x)})

plot = figure(title="small", height=300, width=500)
plot.scatter("x", "y", source=source, size=6)

slider = Slider(title="frequency", value=1.0, start=0.0, end=1e9, step=1.0, name="slider")
div = Div(text="value=1.0", name="div")


def update(attr, old, new):
    source.data = {"x": x, "y": np.sin(new * x)}
    div.text = f"value={new}"


slider.on_change("value", update)

curdoc().add_root(column(slider, div, plot))
curdoc().title = "bench small"
