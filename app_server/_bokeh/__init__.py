"""Every use app_server makes of Bokeh's private API, one module per topic.

Nothing else in app_server touches an underscored Bokeh name (``tests/test_bokeh_internals.py``
checks both that and that each internal below still has the shape its adapter expects, on
bokeh 3.9 and 3.10). A new Bokeh release that moves one of them is this package's work.

``documents``
    ``Document._session_context`` (set: a session context is attached the way Bokeh's server
    attaches it), and for :func:`destroy_document`, ``Document.destroy`` minus its
    ``gc.collect()`` and its heap scan per module: ``Document._roots``,
    ``Document._session_context``, ``DocumentCallbackManager._document``,
    ``DocumentModuleManager._modules``. ``DocumentModelManager._new_models``: the models not
    yet sent to the peer, for patches that reference the others.
``properties``
    What ``HasProps.query_properties_with_values`` would serialize, decided once per class:
    ``HasProps._overridden_defaults``, ``HasProps.properties(_with_props=True)``,
    ``Property._may_have_unstable_default``, ``HasProps._property_values``,
    ``HasProps._unstable_default_values``.
``serialization``
    ``Serializer._encode`` (the per-object hook behind ``encode``), ``Serializer._references``
    and ``Serializer._buffers`` (read in place, not copied), ``Serializer._encoders`` (whether
    a list of plain values may be copied as it is, an array encoded directly), and
    ``Serializer._encode_bytes`` (an array's buffer).
``handlers``
    ``DirectoryHandler._template``, ``DirectoryHandler._lifecycle_handler`` and
    ``LifecycleHandler._on_*`` / ``_do_nothing`` (the app's own hooks, which Bokeh's wrappers
    run in ways that drop async hooks).
``callbacks``
    ``PropertyCallbackManager._callbacks`` and ``EventCallbackManager._event_callbacks``: the
    handlers Bokeh runs for a change or an event, timed and named around one document's
    ``DocumentCallbackManager.trigger_on_change``, ``notify_event`` and ``trigger_event``;
    ``bokeh.document.callbacks._wrap_with_curdoc``, around a session callback's function, which
    a locked run calls directly (the session sets curdoc itself).
``curdoc``
    ``bokeh.io.doc._PATCHED_CURDOCS``: a process-wide list on bokeh 3.9, made per thread;
    a ``ContextVar`` on bokeh 3.10, left alone.

Not here, because app_server implements them rather than reads them: the receiver methods
(``_document_patched``, ``_session_callback_added``, ``_session_callback_removed``) that
``Document.callbacks.on_change_dispatch_to`` calls, the protocol Bokeh's event classes
document, in ``testing.py`` and ``client/session.py`` (the contract test checks it).

Importing this package or its modules changes nothing in Bokeh: ``curdoc`` patches only when
:func:`~app_server._bokeh.curdoc.use_thread_local_curdoc` is called (by ``AppServer``).
"""
