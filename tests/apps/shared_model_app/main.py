from bokeh.io import curdoc
from shared_models import status

curdoc().add_root(status)
