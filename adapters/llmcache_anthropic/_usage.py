"""Reading Anthropic's usage fields (the only place that knows their names), and the price
list a client's calls are priced from.

A Messages API answer (``Message``, ``BetaMessage``, a recorded stream, or a plain dict of
one, such as its ``model_dump()``) reports its prompt in three parts that do not overlap:
``input_tokens`` (read at the plain input price), ``cache_creation_input_tokens`` (written
to Anthropic's prompt cache, at a premium) and ``cache_read_input_tokens`` (read from it,
at a discount). `llmcache.Usage` counts the way genai-prices does: the input total includes
the cache reads and writes, which are parts of it. So, as genai-prices' own ``anthropic``
usage extraction maps them:

    input_tokens + cache_creation_input_tokens + cache_read_input_tokens -> input_tokens
    cache_read_input_tokens                   -> cache_read_tokens
    cache_creation_input_tokens               -> cache_write_tokens
    cache_creation.ephemeral_1h_input_tokens  -> cache_write_1h_tokens (a part of the writes)
    output_tokens                             -> output_tokens (thinking included)
    output_tokens_details.thinking_tokens     -> reasoning_tokens (a part of the output)

Anthropic bills a write kept for one hour (``"ttl": "1h"``) at 2x the input price and the
default 5-minute write at 1.25x; genai-prices has both prices, so the 1-hour part is priced
at its own.

``messages.count_tokens`` is free: its answers are counted at $0 (`count_usage`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from llmcache.ext import Usage

__all__ = ["count_usage", "provider_for_url", "recording_usage", "usage_of"]

log = logging.getLogger("llmcache")

ANTHROPIC_HOST = "api.anthropic.com"


def _field(obj: Any, name: str) -> Any:
    """`obj`'s `name` (a mapping's key or an object's attribute), None if absent."""
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def usage_of(result: Any) -> Usage | None:
    """The `Usage` of an Anthropic message (or of a dict shaped like one), else None.

    Only a Messages API answer (``type`` "message", ``role`` "assistant") is read, never
    another provider's response that also has ``usage.input_tokens`` (OpenAI's Responses
    API). The provider is left unset: the site's (the client's price list, see
    `provider_for_url`) applies. Odd counts (negative, not whole) are `Usage`'s to clean up,
    not an error here.
    """
    if _field(result, "type") != "message" or _field(result, "role") != "assistant":
        return None
    return recording_usage(result)


def recording_usage(result: Any) -> Usage | None:
    """The `Usage` of a message or a recorded stream (its model and final usage at the top:
    see `_streaming`): what the adapter's own call sites price their misses with."""
    usage = _field(result, "usage")
    if usage is None:
        return None
    plain = _field(usage, "input_tokens") or 0
    written = _field(usage, "cache_creation_input_tokens") or 0
    written_1h = _field(_field(usage, "cache_creation"), "ephemeral_1h_input_tokens")
    read = _field(usage, "cache_read_input_tokens") or 0
    details = _field(usage, "output_tokens_details")
    model = _field(result, "model")
    total = plain + written + read if _whole(plain, written, read) else plain
    return Usage(
        model=str(model) if model else None,
        input_tokens=total,
        output_tokens=_field(usage, "output_tokens"),
        cache_read_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=_field(details, "thinking_tokens"),
    )


def _whole(*counts: Any) -> bool:
    """Whether the counts can be added (a malformed one is left to `Usage` to count as 0)."""
    return all(isinstance(count, int) and not isinstance(count, bool) for count in counts)


def count_usage(result: Any) -> Usage:
    """What a ``count_tokens`` call cost: nothing (Anthropic does not bill it)."""
    return Usage(cost_usd=0.0)


def provider_for_url(base_url: str) -> str:
    """The price list of calls to `base_url`: a genai-prices provider id, else the host.

    Anthropic's API is "anthropic" (decided without loading the price data). Another URL is
    matched against genai-prices' provider URL patterns, as its ``calc_price(...,
    provider_api_url=...)`` does. A host genai-prices does not know (a local server, a
    private gateway) is returned as it is ("localhost:8080"): no price list has that id, so
    its calls are unpriced, never priced at another provider's rates, unless
    `llmcache.set_price` names the model or ``cache.wrap(client, provider=...)`` names the
    price list.
    """
    parts = urlsplit(base_url)
    if (parts.hostname or "") == ANTHROPIC_HOST:
        return "anthropic"
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
