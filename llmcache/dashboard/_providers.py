"""Which provider a model belongs to, for the breakdown by model.

The ledger keeps models, not providers, so the provider is inferred from the model's name
by genai-prices (the same data that priced the calls): "gpt-4o-mini" is OpenAI's,
"claude-sonnet-4-6" Anthropic's. A name it does not know is shown as "?", never guessed.
"""

from __future__ import annotations

import functools

__all__ = ["UNKNOWN", "provider_of"]

UNKNOWN = "?"


@functools.lru_cache(maxsize=1024)
def provider_of(model: str) -> str:
    """The provider's name (e.g. "OpenAI"), or "?" for a model genai-prices does not know."""
    from genai_prices import data_snapshot

    try:
        provider, _ = data_snapshot.get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return UNKNOWN
    return str(provider.name)
