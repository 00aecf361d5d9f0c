"""Heavy bench app: a document holding about 2 MB of numpy columns (per session)."""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.plotting import figure

ROWS = 50_000  # 5 float64 columns x 50_000 rows = 2.0 MB

rng = np.random.default_rng()
source = ColumnDataSource(data={name: rng.random(ROWS) for name in ("x", "y", "a", "b", "c")})

plot = figure(title="heavy", height=300, width=500, output_backend="webgl")
plot.scatter("x", "y", source=source, size=2)

curdoc().add_root(column(Div(text="2 MB of numpy columns"), plot))
curdoc().title = "bench heavy"
