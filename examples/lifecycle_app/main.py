from os.path import dirname, join

from bokeh.io import curdoc
from bokeh.models import Button, ColumnDataSource, Div
from bokeh.plotting import figure

from .helpers import load_data

doc = curdoc()
context = doc.session_context

# ?N=3 keeps the first three points: request arguments are lists of bytes
args = context.request.arguments
n = int(args["N"][0]) if "N" in args else None

xs, ys = load_data(join(dirname(__file__), "data", "points.csv"))
source = ColumnDataSource(data=dict(x=xs[:n], y=ys[:n]))

plot = figure(title="points", height=300, width=500, name="plot")
plot.scatter("x", "y", source=source, size=12)

payload = context.token_payload
info = Div(text=f"points: {len(source.data['x'])}, greeting: {payload['greeting']}", name="info")
clicks = Button(label="Click", name="click")
clicks.on_click(lambda: setattr(info, "text", f"clicked in session {context.id}"))

doc.add_root(plot)
doc.add_root(info)
doc.add_root(clicks)
doc.title = "lifecycle app"
doc.template_variables["user"] = payload["greeting"]
doc.template_variables["points"] = len(source.data["x"])
