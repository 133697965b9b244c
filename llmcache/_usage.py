"""What a real call used and cost: the `Usage` a provider reports, and the ledger's metadata.

The core knows no provider's field names. A result's usage comes, in this order, from the
cached function's own `usage=` hook, or from a provider adapter that recognises the result
(its ``usage_of``; e.g. the OpenAI adapter reads ``ChatCompletion.usage``), or it is unknown
(the call is counted, unpriced). An adapter that records a delivery itself (a stream) hands
its `Usage` to ``CallSite.put(..., usage=...)``.

Every provider's counts are put in one form, genai-prices' own: ``input_tokens`` is every
prompt token, the ones read from or written to the provider's prompt cache included, and
the cache counts are parts of it. Providers differ here, and their adapters (which alone
know their field names) convert: OpenAI's prompt total already includes its cached tokens;
Anthropic reports its cache reads and writes apart from its input count, so its adapter
adds them to it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from ._pricing import call_cost

__all__ = ["Usage", "UsageHook", "usage_fields", "usage_meta"]

log = logging.getLogger("llmcache")

_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
# Fields of a provider's usage already warned about, so a broken adapter logs once per field
# rather than on every miss.
_WARNED: set[str] = set()


def _warn_once(field: str, value: Any, why: str) -> None:
    if field not in _WARNED:
        _WARNED.add(field)
        log.warning("llmcache: a usage reported %s=%r (%s); counted as 0", field, value, why)


def _count(field: str, value: Any) -> int:
    """A token count as a non-negative int; anything else is an adapter's bug, counted 0.

    A cache problem must never fail the caller's call, so a bad count is logged, not raised.
    Whole floats (``12.0``, as JSON may give) are accepted.
    """
    if value is None:
        return 0
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (whole or (isinstance(value, float) and value.is_integer())):
        _warn_once(field, value, "not a whole number")
        return 0
    number = int(value)
    if number < 0:
        _warn_once(field, value, "negative")
        return 0
    return number


def _cost(value: Any) -> float | None:
    """A stated cost in USD, or None (unpriced) if it is not a finite non-negative number."""
    if value is None:
        return None
    try:
        cost = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        cost = math.nan
    if math.isfinite(cost) and cost >= 0:
        return cost
    _warn_once("cost_usd", value, "not a finite non-negative number")
    return None


def _name(value: Any) -> str | None:
    return str(value) if value else None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What one real call used, as its provider reported it, in genai-prices' convention.

    The counts are partitions: ``cache_read_tokens + cache_write_tokens <= input_tokens``,
    ``cache_write_1h_tokens <= cache_write_tokens`` and ``reasoning_tokens <=
    output_tokens``. Counts that are negative or not whole numbers are counted as 0 (logged
    once per field), and parts larger than their total are cut to it, so that a provider's
    odd report can never fail the call being cached.

    Args:
        model: the model that answered (prices are looked up by it).
        provider: the price list to use: a genai-prices provider id ("openai", "anthropic",
            "groq", ...). An id genai-prices does not know leaves the call unpriced unless
            `llmcache.set_price` names the model; None lets genai-prices infer the provider
            from the model's name.
        input_tokens: every prompt token, INCLUDING those read from and written to the
            provider's prompt cache (OpenAI's prompt total as it is; Anthropic's input count
            plus its cache reads and cache writes).
        output_tokens: generated tokens, reasoning included.
        cache_read_tokens: the part of `input_tokens` read from the provider's prompt cache
            (billed at a discount by OpenAI and Anthropic).
        cache_write_tokens: the part of `input_tokens` written to the provider's prompt cache
            (billed at a premium by Anthropic, at the input price by OpenAI).
        cache_write_1h_tokens: the part of `cache_write_tokens` written to be kept for one
            hour (Anthropic's ``"ttl": "1h"``, billed at a higher premium than the default
            5-minute writes).
        reasoning_tokens: the part of `output_tokens` spent reasoning, where the provider
            says.
        cost_usd: the call's cost when the provider states it; it wins over the price list.
    """

    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        counts = {field: _count(field, getattr(self, field)) for field in _COUNTS}
        total_in = counts["input_tokens"]
        # The cache parts cannot exceed the input they are parts of: reads first (every
        # provider reports them), then writes in what is left.
        counts["cache_read_tokens"] = min(counts["cache_read_tokens"], total_in)
        counts["cache_write_tokens"] = min(
            counts["cache_write_tokens"], total_in - counts["cache_read_tokens"]
        )
        counts["cache_write_1h_tokens"] = min(
            counts["cache_write_1h_tokens"], counts["cache_write_tokens"]
        )
        counts["reasoning_tokens"] = min(counts["reasoning_tokens"], counts["output_tokens"])
        for field, value in counts.items():
            object.__setattr__(self, field, value)
        object.__setattr__(self, "model", _name(self.model))
        object.__setattr__(self, "provider", _name(self.provider))
        object.__setattr__(self, "cost_usd", _cost(self.cost_usd))

    @property
    def uncached_input_tokens(self) -> int:
        """The input tokens billed at the plain input price (neither read nor written)."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Usage:
        """A `Usage` from a ``usage=`` hook's mapping (same names; others are ignored).

        Counts may be given as numeric text ("120"), as JSON sometimes has them.
        """

        def number(name: str) -> Any:
            value = data.get(name)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    return value  # counted as 0, with a warning
            return value

        return cls(
            model=data.get("model"),
            provider=data.get("provider"),
            cost_usd=number("cost_usd"),
            **{field: number(field) for field in _COUNTS},
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


def usage_fields(usage: Usage, provider: str | None = None) -> dict[str, Any]:
    """The ledger's metadata of one call's `usage`: model, provider, tokens and cost.

    `provider` is the site's price list, used when the usage names none. The cost is the
    stated one, else the price of the tokens (absent when the price is unknown: never 0).
    Counts that are 0 are left out (an entry's metadata is stored with it), except input and
    output, whose presence says that the call reported usage at all.
    """
    meta: dict[str, Any] = {}
    if usage.model:
        meta["model"] = usage.model
    chosen_provider = usage.provider or provider
    if chosen_provider:
        meta["provider"] = chosen_provider
    if usage.input_tokens or usage.output_tokens:
        meta["input_tokens"] = usage.input_tokens
        meta["output_tokens"] = usage.output_tokens
        for part in _COUNTS[2:]:  # the parts: cache reads and writes, reasoning
            if getattr(usage, part):
                meta[part] = getattr(usage, part)
    cost = usage.cost_usd
    if cost is None and usage.model and "input_tokens" in meta:
        cost = call_cost(dataclasses.replace(usage, provider=chosen_provider))
    if cost is not None:
        meta["cost_usd"] = float(cost)
    return meta


def usage_meta(
    result: Any, hook: UsageHook | None = None, provider: str | None = None
) -> dict[str, Any]:
    """The ledger's metadata of a real call's result (see `usage_fields`).

    `hook` is the cached function's ``usage=``: it returns a `Usage`, a mapping with any of
    model, provider, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, reasoning_tokens and cost_usd, or None. Without a hook, the
    provider adapters are asked.
    """
    described = hook(result) if hook is not None else _from_providers(result)
    if not described:
        return {}
    usage = described if isinstance(described, Usage) else Usage.from_mapping(described)
    return usage_fields(usage, provider)
