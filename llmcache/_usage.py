"""What a real call used and cost: the `Usage` a provider reports, and the ledger's metadata.

The core knows no provider's field names. A result's usage comes, in this order, from the
cached function's own `usage=` hook, or from a provider adapter that recognises the result
(its ``usage_of``; e.g. the OpenAI adapter reads ``ChatCompletion.usage``), or it is unknown
(the call is counted, unpriced).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._pricing import call_cost

__all__ = ["Usage", "UsageHook", "usage_meta"]

log = logging.getLogger("llmcache")


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What one real call used, as its provider reported it.

    Args:
        model: the model that answered (prices are looked up by it).
        provider: the price list to use (genai-prices' provider id, e.g. "openai").
        input_tokens: every prompt token, including those read from a prompt cache.
        output_tokens: generated tokens (reasoning included).
        cached_tokens: the input tokens the provider read from its own prompt cache.
        cost_usd: the call's cost when the provider states it; it wins over the price list.
    """

    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Usage:
        """A `Usage` from a ``usage=`` hook's mapping (same names; others are ignored)."""
        return cls(
            model=str(data["model"]) if data.get("model") else None,
            provider=str(data["provider"]) if data.get("provider") else None,
            input_tokens=int(data.get("input_tokens") or 0),
            output_tokens=int(data.get("output_tokens") or 0),
            cached_tokens=int(data.get("cached_tokens") or 0),
            cost_usd=None if data.get("cost_usd") is None else float(data["cost_usd"]),
        )


UsageHook = Callable[[Any], "Usage | Mapping[str, Any] | None"]
# Results that cannot carry a usage record: no provider is asked (nor imported) for them.
_PLAIN = frozenset({str, bytes, int, float, bool, type(None), list, tuple})


def _from_providers(result: Any) -> Usage | None:
    """The usage a provider adapter reads off `result`, if one recognises it.

    Providers are asked only about a result with a ``usage`` (key or attribute), as every
    SDK's response has: the others cannot carry one, and asking would import the providers'
    SDKs on the first miss of any cached function.
    """
    if type(result) in _PLAIN:
        return None
    if isinstance(result, Mapping):
        if "usage" not in result:
            return None
    elif getattr(result, "usage", None) is None:
        return None
    from ._registry import load_providers  # entry points: read on the first such miss

    for provider in load_providers():
        usage_of = getattr(provider, "usage_of", None)
        if usage_of is None:
            continue
        found = usage_of(result)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None


def usage_meta(
    result: Any, hook: UsageHook | None = None, provider: str | None = None
) -> dict[str, Any]:
    """The ledger's metadata of a real call's result: model, provider, tokens and cost.

    `hook` is the cached function's ``usage=``: it returns a `Usage`, a mapping with any of
    model, provider, input_tokens, output_tokens, cached_tokens and cost_usd, or None.
    `provider` is the price list of the site, used when the usage names none.
    """
    described = hook(result) if hook is not None else _from_providers(result)
    if not described:
        return {}
    usage = described if isinstance(described, Usage) else Usage.from_mapping(described)
    meta: dict[str, Any] = {}
    if usage.model:
        meta["model"] = usage.model
    chosen_provider = usage.provider or provider
    if chosen_provider:
        meta["provider"] = chosen_provider
    if usage.input_tokens or usage.output_tokens:
        meta["input_tokens"] = usage.input_tokens
        meta["output_tokens"] = usage.output_tokens
        meta["cached_tokens"] = usage.cached_tokens
    cost = usage.cost_usd
    if cost is None and usage.model and "input_tokens" in meta:
        cost = call_cost(
            usage.model,
            meta.get("provider"),
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
        )
    if cost is not None:
        meta["cost_usd"] = float(cost)
    return meta
