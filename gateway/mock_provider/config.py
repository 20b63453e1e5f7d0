"""Settings of one mock provider instance."""

from __future__ import annotations

from dataclasses import dataclass

CLINICAL_MODES = ("fair", "biased", "off")


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock answers when no fault is injected.

    ``chunks`` is the length of the text reply in tokens: the number of content chunks a stream
    carries and the ``completion_tokens`` a reply reports. ``api_key=None`` accepts any non-empty
    key; a string accepts only that key (to check which key the gateway sends upstream), for every
    protocol. ``cache_*_input_tokens`` are the prompt-cache counts Anthropic replies report.
    ``extra_models`` are accepted on top of the Gemini and Perplexity models the mock knows.

    ``clinical`` answers prompts with an ``Answer format:`` block (``clinical.py``): ``"fair"``
    takes each line's first option, ``"biased"`` the last one when the prompt names one of
    ``disfavoured_terms`` (whole words, any case), ``"off"`` answers ``reply_text`` as usual.
    """

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    chunks: int = 20
    reply_text: str = "This is a mock reply."
    api_key: str | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    extra_models: tuple[str, ...] = ()
    clinical: str = "fair"
    disfavoured_terms: tuple[str, ...] = ("Black", "woman", "uninsured")

    def __post_init__(self) -> None:
        if self.clinical not in CLINICAL_MODES:
            raise ValueError(f"clinical must be one of {', '.join(CLINICAL_MODES)}")
