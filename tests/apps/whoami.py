from bokeh.io import curdoc
from bokeh.models import Div

context = curdoc().session_context
curdoc().add_root(Div(text=f"user={context.user} logout={context.logout_url}", name="who"))
