"""What a LiteLLM call used, read off the value LiteLLM stores for it (the only place that
knows LiteLLM's field names).

LiteLLM stores ``{"timestamp": ..., "response": ...}``: for a completion, the response is the
OpenAI-shaped ``ModelResponse`` (as a dict here), whose ``usage`` counts the whole prompt in
``prompt_tokens`` with the prompt cache's part in ``prompt_tokens_details.cached_tokens``, the
convention of `llmcache.Usage`; for one input of an async embedding call it is LiteLLM's
``CachedEmbedding`` (``model`` and that input's ``prompt_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcache.ext import Usage

__all__ = ["usage_of"]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else None


def usage_of(response: Any, provider: str | None) -> Usage | None:
    """The `Usage` of a stored LiteLLM response (a dict), else None (not priced)."""
    if not isinstance(response, Mapping):
        return None
    model = _get(response, "model")
    usage = _get(response, "usage")
    if usage is None:
        if _get(response, "embedding") is None:
            return None
        usage = response  # a CachedEmbedding: its prompt_tokens are at the top
    input_tokens = _get(usage, "prompt_tokens")
    output_tokens = _get(usage, "completion_tokens")
    if input_tokens is None and output_tokens is None:
        return None
    prompt_details = _get(usage, "prompt_tokens_details")
    completion_details = _get(usage, "completion_tokens_details")
    return Usage(
        model=str(model) if model else None,
        provider=provider,
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cache_read_tokens=_get(prompt_details, "cached_tokens") or 0,
        cache_write_tokens=_get(prompt_details, "cache_creation_tokens") or 0,
        reasoning_tokens=_get(completion_details, "reasoning_tokens") or 0,
    )
