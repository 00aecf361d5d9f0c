"""Bokeh's "Updating from unlocked callbacks" example, unchanged.

The unlocked periodic callback waits on a thread pool; the locked one keeps its rate.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from bokeh.document import without_document_lock
from bokeh.models import ColumnDataSource
from bokeh.plotting import curdoc, figure

source = ColumnDataSource(data=dict(x=[0], y=[0], color=["blue"]))

i = 0

doc = curdoc()

executor = ThreadPoolExecutor(max_workers=2)


def blocking_task(i):
    time.sleep(1)
    return i


# the unlocked callback uses this locked callback to safely update
async def locked_update(i):
    source.stream(dict(x=[source.data["x"][-1] + 1], y=[i], color=["blue"]))


# this unlocked callback will not prevent other session callbacks from
# executing while it is running
@without_document_lock
async def unlocked_task():
    global i
    i += 1
    res = await asyncio.wrap_future(executor.submit(blocking_task, i), loop=None)
    doc.add_next_tick_callback(partial(locked_update, i=res))


async def update():
    source.stream(dict(x=[source.data["x"][-1] + 1], y=[i], color=["red"]))


p = figure(x_range=[0, 100], y_range=[0, 20])
l = p.scatter(x="x", y="y", color="color", source=source)  # noqa: E741  (the seed's own name)

doc.add_periodic_callback(unlocked_task, 1000)
doc.add_periodic_callback(update, 200)

doc.add_root(p)
