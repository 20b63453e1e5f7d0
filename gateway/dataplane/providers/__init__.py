"""Provider registry: provider name (``billing.models.Provider``) → adapter."""

from __future__ import annotations

from gateway.dataplane.providers.anthropic import AnthropicProvider
from gateway.dataplane.providers.base import Provider
from gateway.dataplane.providers.gemini import GeminiProvider
from gateway.dataplane.providers.openai import OpenAIProvider
from gateway.dataplane.providers.perplexity import PerplexityProvider

_openai = OpenAIProvider()

REGISTRY: dict[str, Provider] = {
    "openai": _openai,
    "openai_compatible": _openai,
    "anthropic": AnthropicProvider(),
    "google": GeminiProvider(),
    "perplexity": PerplexityProvider(),
}


def adapter_for(provider: str) -> Provider | None:
    return REGISTRY.get(provider)
