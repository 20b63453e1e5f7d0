"""A faithful, cheap fake of the OpenAI, Anthropic, Gemini and Perplexity APIs (no Django).

Used by the test suite (:class:`MockServer`), by the benchmark and by ``make run`` without a
provider key (``python -m gateway.mock_provider``). See ``server.py`` for the routes,
``protocols/`` for each provider's wire format and ``faults.py`` for failure injection.
"""

from __future__ import annotations

from .config import MockConfig
from .faults import Fault, FaultError
from .server import MockServer, create_app

__all__ = ["Fault", "FaultError", "MockConfig", "MockServer", "create_app"]
