"""JSON for the receipts API with the stored signed receipt spliced in as it is.

DRF's renderer would parse and re-print a receipt: ``0.000015`` would come back as
``1.5e-05``, ``2`` maybe as ``2.0``, and the bytes a relying party hashes or shows would
no longer be the ones signed. :class:`ReceiptJSONRenderer` writes the response with
orjson and the receipt as an ``orjson.Fragment`` of its stored text, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # as DRF's DecimalField prints them
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def verbatim(text: str) -> orjson.Fragment:
    """Already-serialised JSON, written into the response as it is. Only for text that
    parsed as JSON (``healthcare.selectors.document_object``)."""
    return orjson.Fragment(text.encode("utf-8"))


class ReceiptJSONRenderer(JSONRenderer):
    """Compact UTF-8 JSON, like the project's JSON renderer, with fragments kept verbatim."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_default)
