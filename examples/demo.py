"""The bundled example: a sine wave whose frequency follows a slider, and a button.

Run it with `make serve`, or `app-server serve examples/demo.py`.
"""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, Div, Slider
from bokeh.plotting import figure

x = np.linspace(0, 4 * np.pi, 200)
source = ColumnDataSource(data={"x": x, "y": np.sin(x)})

plot = figure(title="y = sin(f x)", height=350, width=650, name="plot")
plot.line("x", "y", source=source, line_width=3, line_alpha=0.7)

frequency = Slider(title="frequency", value=1.0, start=0.1, end=5.0, step=0.1, name="frequency")
button = Button(label="Reset", button_type="primary", name="reset")
status = Div(text="frequency = 1.0, resets: 0", name="status")
resets = 0


def update(attr, old, new):
    source.data = {"x": x, "y": np.sin(new * x)}
    status.text = f"frequency = {new}, resets: {resets}"


def reset():
    global resets
    resets += 1
    frequency.value = 1.0
    status.text = f"frequency = 1.0, resets: {resets}"


frequency.on_change("value", update)
button.on_click(reset)

curdoc().add_root(column(row(frequency, button), status, plot))
curdoc().title = "app_server demo"
