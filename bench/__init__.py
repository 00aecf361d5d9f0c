"""Side-by-side benchmark of app_server, ``bokeh serve`` and bokeh's ``BokehASGI`` (issue 8).

Run it with ``make bench`` or ``python -m bench`` (``--quick`` for a smoke run).
"""
