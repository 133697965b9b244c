"""What a call cost: genai-prices' data for known models, None for unknown ones (never 0),
and a price lookup that fails for any other reason is "unknown" too, never a failed call."""

from __future__ import annotations

import pytest

from llmcache import _pricing
from llmcache._pricing import call_cost

MODEL = "gpt-4o-mini"


@pytest.fixture(autouse=True)
def _fresh_lookups() -> None:
    _pricing._genai_price.cache_clear()


def test_no_model_has_no_price() -> None:
    assert call_cost(None, "openai", 1000, 100) is None
    assert call_cost("", None, 1000, 100) is None


def test_a_provider_unknown_to_the_price_data_is_priced_by_the_model_alone() -> None:
    by_openai = call_cost(MODEL, "openai", 1_000_000, 1_000_000)
    assert by_openai is not None and by_openai > 0
    # Our provider name (an OpenAI-compatible proxy, say) means nothing to genai-prices.
    assert call_cost(MODEL, "my-proxy", 1_000_000, 1_000_000) == by_openai


def test_an_unknown_model_has_no_price_whoever_serves_it() -> None:
    assert call_cost("no-such-model-7", "my-proxy", 1000, 100) is None
    assert call_cost("no-such-model-7", "openai", 1000, 100) is None  # not another's price
    assert call_cost("no-such-model-7", None, 1000, 100) is None


def test_broken_price_data_makes_the_price_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import genai_prices

    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("a price snapshot of an incompatible shape")

    monkeypatch.setattr(genai_prices, "calc_price", broken)
    assert call_cost(MODEL, "openai", 1000, 100) is None


def test_a_price_set_here_overrides_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pricing, "_OVERRIDES", {})
    _pricing.set_price("house-model", input_per_mtok=2.0, output_per_mtok=8.0)
    assert call_cost("house-model", None, 1_000_000, 500_000) == pytest.approx(6.0)
    # Cached input tokens cost the input price unless a cached price is set.
    assert call_cost("house-model", None, 1_000_000, 0, cached_tokens=400_000) == pytest.approx(2.0)
    _pricing.set_price(
        "house-model", input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5
    )
    assert call_cost("house-model", None, 1_000_000, 0, cached_tokens=400_000) == pytest.approx(
        0.6 * 2.0 + 0.4 * 0.5
    )
