"""The provider APIs the mock speaks; one module each, one shared instance each."""

from __future__ import annotations

from .anthropic import AnthropicProtocol
from .base import Protocol
from .gemini import GeminiProtocol
from .openai import OpenAIProtocol
from .perplexity import PerplexityProtocol

OPENAI = OpenAIProtocol()
ANTHROPIC = AnthropicProtocol()
GEMINI = GeminiProtocol()
PERPLEXITY = PerplexityProtocol()

__all__ = ["ANTHROPIC", "GEMINI", "OPENAI", "PERPLEXITY", "Protocol"]
