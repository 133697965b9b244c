"""What a call cost, from genai-prices' bundled price data, plus user overrides.

Prices are data, looked up, never hard-coded in logic. An unknown model's cost is None
("unknown"), never 0, so a report cannot claim savings it cannot back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Price", "call_cost", "set_price"]


@dataclass(frozen=True, slots=True)
class Price:
    """A user-supplied price in USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


_OVERRIDES: dict[str, Price] = {}
_LOCK = threading.Lock()


def set_price(
    model: str,
    *,
    input_per_mtok: float,
    output_per_mtok: float,
    cached_input_per_mtok: float | None = None,
) -> None:
    """Add or override the price of `model` (USD per million tokens) for this process."""
    with _LOCK:
        _OVERRIDES[model] = Price(input_per_mtok, output_per_mtok, cached_input_per_mtok)
    _genai_price.cache_clear()


@lru_cache(maxsize=4096)
def _genai_price(
    model: str, provider: str | None, input_tokens: int, output_tokens: int, cached_tokens: int
) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - genai-prices is a core dependency
        return None
    usage = Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_tokens
    )
    try:
        result = calc_price(usage, model, provider_id=provider)
    except LookupError:
        if provider is None or _known_provider(provider):
            # A provider genai-prices knows, without this model (e.g. a local model served
            # through an OpenAI-compatible endpoint): unknown, not another provider's price.
            return None
        try:  # the provider id is ours, not genai-prices': let it match the model alone
            result = calc_price(usage, model)
        except LookupError:
            return None
    except Exception:  # malformed price data or usage must not fail a call: price unknown
        return None
    return float(result.total_price)


@lru_cache(maxsize=64)
def _known_provider(provider: str) -> bool:
    try:
        from genai_prices import data_snapshot

        return any(p.id == provider for p in data_snapshot.get_snapshot().providers)
    except Exception:  # pragma: no cover - an incompatible genai-prices: assume not known
        return False


def call_cost(
    model: str | None,
    provider: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
) -> float | None:
    """USD cost of one call, or None when the model's price is unknown.

    `input_tokens` includes `cached_tokens` (OpenAI's and genai-prices' convention).
    """
    if not model:
        return None
    override = _OVERRIDES.get(model)
    if override is not None:
        cached_rate = override.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = override.input_per_mtok
        uncached = max(input_tokens - cached_tokens, 0)
        return (
            uncached * override.input_per_mtok
            + cached_tokens * cached_rate
            + output_tokens * override.output_per_mtok
        ) / 1_000_000
    return _genai_price(model, provider, input_tokens, output_tokens, cached_tokens)
