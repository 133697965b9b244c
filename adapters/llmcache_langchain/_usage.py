"""What a LangChain call used and cost: its model, price list and tokens, for the ledger.

LangChain tells a cache two strings and the generations. The model and the price list come
from the `llm_string` (a serialisable chat model writes its class path and constructor
arguments there as JSON, then ``---`` and the call's parameters), the tokens from the
generations' `usage_metadata` (LangChain's own form, the same for every provider).

LangChain's ``input_tokens`` is the whole prompt, its prompt-cache reads and writes
included (``input_token_details.cache_read`` / ``cache_creation``), which is the form
`Usage` takes, so the counts map one to one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from llmcache.ext import Usage

__all__ = ["model_and_provider", "usage_of"]

# The LangChain package a chat model comes from (its `lc` id's third part) -> the price list.
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "azure_openai": "azure"}
# Each price list's official API host. A model pointed elsewhere (a gateway, a local server)
# is left unpriced unless `LangChainCache(provider=...)` names the list, as `cache.wrap` does.
_OFFICIAL_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}
_BASE_URL_ARGUMENTS = ("openai_api_base", "anthropic_api_url", "base_url")
# Not Azure's `deployment_name`: a name the user chose, so the response's model is used.
_MODEL_ARGUMENTS = ("model_name", "model", "model_id")
# A model that is not serialisable writes `str(sorted(params.items()))` instead of JSON.
_REPR_MODEL = re.compile(r"\('(?:model_name|model|model_id)', '([^']+)'\)")
_decoder = json.JSONDecoder()


def _constructor(llm_string: str) -> Mapping[str, Any] | None:
    if not llm_string.startswith("{"):
        return None
    try:
        found, _end = _decoder.raw_decode(llm_string)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def model_and_provider(llm_string: str, provider: str | None) -> tuple[str | None, str | None]:
    """(model, price list) named by an `llm_string`; either may be None (unknown)."""
    constructor = _constructor(llm_string)
    if constructor is None:
        match = _REPR_MODEL.search(llm_string)
        return (match.group(1) if match else None), provider
    kwargs = constructor.get("kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    model = next(
        (kwargs[name] for name in _MODEL_ARGUMENTS if isinstance(kwargs.get(name), str)), None
    )
    if provider is not None:
        return model, provider
    ids = constructor.get("id")
    package = ids[2] if isinstance(ids, list) and len(ids) > 3 else None
    found = _PROVIDERS.get(package) if isinstance(package, str) else None
    official = _OFFICIAL_HOSTS.get(found or "")
    for name in _BASE_URL_ARGUMENTS:
        base_url = kwargs.get(name)
        if isinstance(base_url, str) and urlsplit(base_url).hostname != official:
            # Not the provider's own API, so its prices may not apply: the host is the price
            # list's id, which genai-prices does not have, so the call is unpriced (never
            # priced at another provider's rates), as `cache.wrap` does for such a client.
            return model, urlsplit(base_url).netloc or base_url
    return model, found


def _count(details: Any, name: str) -> int:
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(generations: Sequence[Any], model: str | None, provider: str | None) -> Usage | None:
    """The usage of the call that produced `generations`, or None if they report none.

    A call with several generations (``n=2``) reports one usage for all of them on each
    message, so the first message that has one is the call's.
    """
    for generation in generations:
        message = getattr(generation, "message", None)
        usage = getattr(message, "usage_metadata", None)
        if not isinstance(usage, Mapping):
            continue
        metadata = getattr(message, "response_metadata", None)
        if model is None and isinstance(metadata, Mapping):
            named = metadata.get("model_name") or metadata.get("model")
            model = named if isinstance(named, str) else None
        inputs = usage.get("input_token_details")
        outputs = usage.get("output_token_details")
        return Usage(
            model=model,
            provider=provider,
            input_tokens=_count(usage, "input_tokens"),
            output_tokens=_count(usage, "output_tokens"),
            cache_read_tokens=_count(inputs, "cache_read"),
            # langchain-anthropic splits the writes by how long they are kept (and then
            # sets `cache_creation` to 0); other integrations give only `cache_creation`.
            cache_write_tokens=_count(inputs, "cache_creation")
            + _count(inputs, "ephemeral_5m_input_tokens")
            + _count(inputs, "ephemeral_1h_input_tokens"),
            cache_write_1h_tokens=_count(inputs, "ephemeral_1h_input_tokens"),
            reasoning_tokens=_count(outputs, "reasoning"),
        )
    return None
