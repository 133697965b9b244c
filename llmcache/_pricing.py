"""What a call cost, from genai-prices' bundled price data, plus user overrides.

Prices are data, looked up, never hard-coded in logic. An unknown model's cost is None
("unknown"), never 0, so a report cannot claim savings it cannot back; so is the cost of a
model served by a provider genai-prices does not know (a local vLLM or Ollama server, a
private gateway), unless `set_price` names the model.

Usage is priced in genai-prices' convention (see `llmcache.Usage`): the input count includes
the prompt-cache reads and writes, which are billed at their own prices where the price
list has them (OpenAI: reads at a discount, writes free of extra charge; Anthropic: reads at
a discount, writes at a premium).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._usage import Usage

__all__ = ["Price", "call_cost", "set_price"]


@dataclass(frozen=True, slots=True)
class Price:
    """A user-supplied price in USD per million tokens (see `set_price`)."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    cache_write_1h_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        """USD cost of `usage`. An unset cache price bills those tokens at the input price;
        an unset 1-hour write price bills 1-hour writes as other writes."""
        read_rate = self.input_per_mtok
        if self.cache_read_per_mtok is not None:
            read_rate = self.cache_read_per_mtok
        write_rate = self.input_per_mtok
        if self.cache_write_per_mtok is not None:
            write_rate = self.cache_write_per_mtok
        write_1h_rate = write_rate
        if self.cache_write_1h_per_mtok is not None:
            write_1h_rate = self.cache_write_1h_per_mtok
        return (
            usage.uncached_input_tokens * self.input_per_mtok
            + usage.cache_read_tokens * read_rate
            + (usage.cache_write_tokens - usage.cache_write_1h_tokens) * write_rate
            + usage.cache_write_1h_tokens * write_1h_rate
            + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


_OVERRIDES: dict[str, Price] = {}
_LOCK = threading.Lock()


def _rate(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"set_price: {name} must be a number of USD per million tokens")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"set_price: {name} must be finite and >= 0, got {value!r}")


def set_price(
    model: str,
    *,
    input_per_mtok: float,
    output_per_mtok: float,
    cache_read_per_mtok: float | None = None,
    cache_write_per_mtok: float | None = None,
    cache_write_1h_per_mtok: float | None = None,
) -> None:
    """Add or override the price of `model` (USD per million tokens) for this process.

    It wins over genai-prices' data for that model name, whoever serves it, so it also
    prices models of providers genai-prices does not know (a local or private server).

    Args:
        model: the model name as the provider reports it in its responses.
        input_per_mtok: price of an input token that is neither read from nor written to
            the provider's prompt cache.
        output_per_mtok: price of an output token (reasoning tokens included).
        cache_read_per_mtok: price of an input token read from the provider's prompt cache.
            Unset (None): cache reads are billed at `input_per_mtok`, with no discount
            assumed; a provider that discounts them needs its price here to show it.
        cache_write_per_mtok: price of an input token written to the provider's prompt
            cache. Unset (None): billed at `input_per_mtok`, with no premium assumed (right
            for OpenAI-style caching, which charges none; Anthropic charges one).
        cache_write_1h_per_mtok: price of an input token written to the prompt cache for one
            hour (Anthropic's ``"ttl": "1h"``, billed above the 5-minute write). Unset
            (None): billed as other cache writes.

    Raises:
        ConfigError: a price that is not a finite number >= 0.
    """
    for name, value in (
        ("input_per_mtok", input_per_mtok),
        ("output_per_mtok", output_per_mtok),
        ("cache_read_per_mtok", cache_read_per_mtok),
        ("cache_write_per_mtok", cache_write_per_mtok),
        ("cache_write_1h_per_mtok", cache_write_1h_per_mtok),
    ):
        _rate(name, value)
    price = Price(
        input_per_mtok,
        output_per_mtok,
        cache_read_per_mtok,
        cache_write_per_mtok,
        cache_write_1h_per_mtok,
    )
    with _LOCK:
        _OVERRIDES[model] = price


@lru_cache(maxsize=4096)
def _genai_price(
    model: str,
    provider: str | None,
    input_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    cache_write_1h_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - genai-prices is a core dependency
        return None
    if provider is not None and not _known_provider(provider):
        # Not a price list genai-prices has (e.g. a self-hosted server): another
        # provider's price for the same model name would be a guess, so it is unknown.
        return None
    usage = Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        # A part of cache_write_tokens, at the list's 1-hour write price where it has one.
        cache_write_1h_tokens=cache_write_1h_tokens,
        output_tokens=output_tokens,
        # A part of output_tokens, priced apart only where a price list says so.
        output_reasoning_tokens=reasoning_tokens,
    )
    try:
        result = calc_price(usage, model, provider_id=provider)
    except LookupError:  # the model is not in that provider's list (nor any, without one)
        return None
    except Exception:  # malformed price data or usage must not fail a call: price unknown
        return None
    return float(result.total_price)


@lru_cache(maxsize=64)
def _known_provider(provider: str) -> bool:
    """Whether `provider` is the id of one of genai-prices' price lists (case aside)."""
    try:
        from genai_prices import data_snapshot

        wanted = provider.strip().lower()
        return any(p.id == wanted for p in data_snapshot.get_snapshot().providers)
    except Exception:  # pragma: no cover - an incompatible genai-prices: assume not known
        return False


def call_cost(usage: Usage) -> float | None:
    """USD cost of one call's `usage`, or None when its price is unknown (never 0 for that).

    A price set with `set_price` for the model wins; else genai-prices prices it from the
    list of `usage.provider` (None: the provider genai-prices infers from the model name).
    """
    if not usage.model:
        return None
    override = _OVERRIDES.get(usage.model)
    if override is not None:
        return override.cost(usage)
    return _genai_price(
        usage.model,
        usage.provider,
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    )
