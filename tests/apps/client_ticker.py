"""Test app for app_server.client: the server changes the document on its own.

A periodic callback counts in the ``ticks`` Div; the request arguments of the session
are shown in the ``arguments`` Div.
"""

from bokeh.io import curdoc
from bokeh.models import Div

doc = curdoc()
ticks = Div(text="0", name="ticks")
arguments = doc.session_context.request.arguments
shown = {name: [value.decode() for value in values] for name, values in arguments.items()}
args = Div(text=repr(sorted(shown.items())), name="arguments")


def tick():
    ticks.text = str(int(ticks.text) + 1)


doc.add_periodic_callback(tick, 50)
doc.add_root(ticks)
doc.add_root(args)
