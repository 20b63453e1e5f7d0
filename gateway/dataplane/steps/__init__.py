"""The steps of a /v1 call, in the order ``pipeline.py`` runs them: authenticate, parse,
route, admit, cache, call upstream, answer, settle and record. Each takes the worker's
:class:`~gateway.dataplane.runtime.Runtime` and the :class:`~gateway.dataplane.call.Call`
(or just what it needs), and raises :class:`~aqta.errors.AqtaError` to refuse."""
