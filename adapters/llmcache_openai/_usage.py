"""Reading OpenAI's usage fields (the only place that knows their names), and the price list
a client's calls are priced from.

Chat completions report ``prompt_tokens`` / ``completion_tokens``, with the prompt cache's
part in ``prompt_tokens_details`` and the reasoning part in ``completion_tokens_details``;
the Responses API reports ``input_tokens`` / ``output_tokens`` (``input_tokens_details``,
``output_tokens_details``); embeddings report ``prompt_tokens`` alone. The same shapes are
read from plain dicts (a response's ``model_dump()``, or a user's own function returning one).

OpenAI counts the cached prompt tokens inside the prompt total, which is the convention of
`llmcache.Usage` (and genai-prices'), so the numbers map one to one, as genai-prices' own
``openai`` extractors map them:

    prompt_tokens / input_tokens              -> input_tokens (total, cache included)
    *_tokens_details.cached_tokens            -> cache_read_tokens (billed at a discount)
    *_tokens_details.cache_write_tokens       -> cache_write_tokens
    completion_tokens / output_tokens         -> output_tokens
    *_tokens_details.reasoning_tokens         -> reasoning_tokens (a part of the output)
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from llmcache.ext import Usage

__all__ = ["provider_for_url", "usage_of"]

log = logging.getLogger("llmcache")

OPENAI_HOST = "api.openai.com"


def _field(obj: Any, *names: str) -> Any:
    """The first of `names` that `obj` (a mapping or an object) has and is not None."""
    if obj is None:
        return None
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def usage_of(result: Any) -> Usage | None:
    """The `Usage` of an OpenAI response (or of a dict shaped like one), else None.

    The provider is left unset: the site's (the client's price list, see `provider_for_url`)
    applies. Odd counts (negative, not whole) are `Usage`'s to clean up, not an error here.
    """
    if _field(result, "type") == "message":  # an Anthropic Message: not ours to count
        return None
    usage = _field(result, "usage")
    if usage is None:
        return None
    input_tokens = _field(usage, "prompt_tokens", "input_tokens")
    output_tokens = _field(usage, "completion_tokens", "output_tokens")
    if input_tokens is None and output_tokens is None:
        return None  # not a usage record we know
    input_details = _field(usage, "prompt_tokens_details", "input_tokens_details")
    output_details = _field(usage, "completion_tokens_details", "output_tokens_details")
    model = _field(result, "model")
    return Usage(
        model=str(model) if model else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=_field(input_details, "cached_tokens"),
        cache_write_tokens=_field(input_details, "cache_write_tokens"),
        reasoning_tokens=_field(output_details, "reasoning_tokens"),
    )


def provider_for_url(base_url: str) -> str:
    """The price list of calls to `base_url`: a genai-prices provider id, else the host.

    OpenAI's own API is "openai" (decided without loading the price data). Another URL is
    matched against genai-prices' provider URL patterns, as its ``calc_price(...,
    provider_api_url=...)`` does, so Groq, Together, Fireworks, DeepSeek, OpenRouter, ...
    get their own prices. A host genai-prices does not know (a local vLLM or Ollama server,
    a private gateway) is returned as it is ("localhost:11434"): no price list has that id,
    so its calls are unpriced, never priced at another provider's rates, unless
    `llmcache.set_price` names the model or ``cache.wrap(client, provider=...)`` names the
    price list.
    """
    parts = urlsplit(base_url)
    if (parts.hostname or "") == OPENAI_HOST:
        return "openai"
    return _matched_provider(base_url) or parts.netloc or base_url


@functools.lru_cache(maxsize=256)
def _matched_provider(base_url: str) -> str | None:
    try:
        from genai_prices import data_snapshot

        providers = data_snapshot.get_snapshot().providers
    except Exception as error:  # no usable price data: every call is unpriced, none fails
        log.warning("llmcache: genai-prices' provider list is unavailable: %r", error)
        return None
    for provider in providers:
        if provider.api_pattern and re.match(provider.api_pattern, base_url):
            return str(provider.id)
    return None
