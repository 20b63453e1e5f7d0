"""The /v1 data plane: everything a request to ``/v1`` runs through, and nothing else.

Start at ``app.py`` (the ASGI app, its one route table and start-up); a chat completion's
way through the gateway is ``pipeline.py``, one step per module. docs/architecture.md
explains why this is a raw ASGI app beside Django and what each step costs. No database
access happens on this path: keys come from ``keycache``, the catalogue from ``catalog``
(reloaded in the background), and traces leave through ``buffer``.
"""
