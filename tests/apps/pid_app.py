"""Names the worker process that runs the session: a Div whose text is its pid."""

import os

from bokeh.io import curdoc
from bokeh.models import Div

curdoc().add_root(Div(text=str(os.getpid()), name="pid"))
