"""What a call cost: genai-prices' data for known models, None for unknown ones (never 0),
and a price lookup that fails for any other reason is "unknown" too, never a failed call."""

from __future__ import annotations

import pytest

from llmcache import Usage, _pricing
from llmcache._pricing import call_cost

MODEL = "gpt-4o-mini"


@pytest.fixture(autouse=True)
def _fresh_lookups() -> None:
    _pricing._genai_price.cache_clear()


def cost(model: str | None, provider: str | None, tokens_in: int, tokens_out: int) -> float | None:
    return call_cost(
        Usage(model=model, provider=provider, input_tokens=tokens_in, output_tokens=tokens_out)
    )


def test_no_model_has_no_price() -> None:
    assert cost(None, "openai", 1000, 100) is None
    assert cost("", None, 1000, 100) is None


def test_a_provider_unknown_to_the_price_data_leaves_the_call_unpriced() -> None:
    by_openai = cost(MODEL, "openai", 1_000_000, 1_000_000)
    assert by_openai is not None and by_openai > 0
    assert cost(MODEL, "OpenAI", 1_000_000, 1_000_000) == by_openai  # ids are case-blind
    # Our provider name (an OpenAI-compatible proxy or a local server, say) is not a price
    # list: pricing it as OpenAI would be a guess (a local model may carry OpenAI's name).
    assert cost(MODEL, "my-proxy", 1_000_000, 1_000_000) is None
    assert cost(MODEL, None, 1_000_000, 1_000_000) == by_openai  # inferred from the name


def test_an_unknown_model_has_no_price_whoever_serves_it() -> None:
    assert cost("no-such-model-7", "my-proxy", 1000, 100) is None
    assert cost("no-such-model-7", "openai", 1000, 100) is None  # not another's price
    assert cost("no-such-model-7", None, 1000, 100) is None


def test_broken_price_data_makes_the_price_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import genai_prices

    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("a price snapshot of an incompatible shape")

    monkeypatch.setattr(genai_prices, "calc_price", broken)
    assert cost(MODEL, "openai", 1000, 100) is None


def test_a_price_set_here_overrides_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pricing, "_OVERRIDES", {})
    _pricing.set_price("house-model", input_per_mtok=2.0, output_per_mtok=8.0)
    assert cost("house-model", None, 1_000_000, 500_000) == pytest.approx(6.0)
    # Cache-read input tokens cost the input price unless a cache-read price is set.
    cached = Usage(model="house-model", input_tokens=1_000_000, cache_read_tokens=400_000)
    assert call_cost(cached) == pytest.approx(2.0)
    _pricing.set_price(
        "house-model", input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=0.5
    )
    assert call_cost(cached) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5)
