"""A live-server fuzzer for app_server (``make fuzz``, or ``python -m fuzz --help``).

It starts ``app-server serve examples/demo.py`` and sends it thousands of random and mutated
Bokeh messages over raw websockets while an honest session keeps working. Its oracle
(:mod:`fuzz.oracle`) predicts each connection's fate from the frames alone, with a model of
Bokeh's framing written here (:mod:`fuzz.framing`), not app_server's ``Receiver``.

Modules: :mod:`fuzz.framing` (the framing model), :mod:`fuzz.rawws` (an RFC 6455 client that
sends any frame; the test suite uses it too), :mod:`fuzz.cases` (random values, mutations and
fuzz cases), :mod:`fuzz.oracle` (the prediction), :mod:`fuzz.run` (the run and its checks).
"""
