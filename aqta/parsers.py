"""Request parsers for /api."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with nesting deeper than Python's decoder can follow refused.

    ``json`` raises ``RecursionError`` for a body nested some thousand levels deep (a few
    kilobytes of ``[``), which DRF does not turn into a parse error: it became a 500.
    Nothing /api accepts nests more than a few levels, so such a body is simply invalid.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON nested too deeply.") from None
