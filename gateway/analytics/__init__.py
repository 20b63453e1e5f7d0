"""The control plane's view of traffic: rollups of traces (``rollups``), the reads built on
them (``selectors``) and the ``/api/analytics`` API (``api``, ``urls``). Nothing here is on
the /v1 request path, and nothing here imports ``gateway.dataplane``."""
