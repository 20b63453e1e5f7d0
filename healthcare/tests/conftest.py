"""The live-gateway fixtures (``gateway/tests/conftest.py``) for the receipts' live tests."""

from gateway.tests.conftest import live_gateway, make_key, mock, mock_provider  # noqa: F401
