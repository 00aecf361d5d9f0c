"""An app that loads a stylesheet (with a web font), a script and an iframe from another origin,
as apps that use a CDN do; the origin comes in the page's ``cdn`` argument."""

from bokeh.io import curdoc
from bokeh.models import Div
from jinja2 import Template

doc = curdoc()
request = doc.session_context.request
cdn = request.arguments["cdn"][0].decode()

doc.template = Template(
    """{% extends base %}
{% block preamble %}
<link rel="stylesheet" href="{{ cdn }}/style.css">
<script src="{{ cdn }}/lib.js"></script>
{% endblock %}
{% block contents %}
{{ super() }}
<iframe id="frame" src="{{ cdn }}/frame.html"></iframe>
{% endblock %}"""
)
doc.template_variables["cdn"] = cdn
doc.add_root(Div(text="<p class='from-cdn'>styled from elsewhere</p>", name="div"))
