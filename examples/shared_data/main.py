"""Each session gets its own small models over one shared DataFrame (seed 001's question)."""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Select
from bokeh.plotting import figure

from .data import load_prices

prices = load_prices()  # the same object in every session: no per-tab copy
STEP = 2_000  # show every 2000th row: 500 points per session


def view(name):
    series = prices[name].to_numpy()[::STEP]
    return {"x": list(range(0, len(prices), STEP)), "y": series}


source = ColumnDataSource(data=view("alpha"))
plot = figure(title="alpha", height=300, width=650, name="plot")
plot.line("x", "y", source=source)
choice = Select(title="series", value="alpha", options=list(prices.columns), name="series")
info = Div(text=f"{len(prices):,} rows shared by every session", name="info")


def switch(attr, old, new):
    source.data = view(new)
    plot.title.text = new


choice.on_change("value", switch)
curdoc().add_root(column(choice, info, plot))
curdoc().title = "shared data"
