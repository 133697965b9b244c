"""Provider-neutral usage and its price under server-side prompt caching (issue 11).

Prices below are the published per-million-token prices of genai-prices' bundled data
(the version installed with llmcache), written out so that every expected cost is computed
by hand here, not by the code under test:

    claude-sonnet-4-5 (anthropic): input $3, cache write $3.75, cache read $0.30, output $15
        (these are the prices below 200k input tokens; every test stays under that tier)
    gpt-4o (openai): input $2.50, cache read $1.25, output $10 (no cache-write price: OpenAI
        charges no premium, so written tokens bill at the input price)
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmcache_openai import _usage as openai_usage
from openai import AzureOpenAI, OpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

import llmcache
from llmcache import ConfigError, Usage, _pricing
from llmcache._ledger import METRICS, epoch_day_of
from llmcache._pricing import call_cost
from llmcache._render import render_text
from llmcache._usage import usage_fields
from llmcache.testing import FakeOpenAIServer

MTOK = 1_000_000
SONNET = "claude-sonnet-4-5-20250929"  # the model name Anthropic's responses carry
GPT_4O = "gpt-4o-2024-08-06"


@pytest.fixture(autouse=True)
def _no_price_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pricing, "_OVERRIDES", {})
    _pricing._genai_price.cache_clear()


@pytest.fixture
def cache() -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="pricing", tiers=["memory"]) as made:
        yield made


# -- one response with cache reads and writes, priced by hand -------------------------------------
# Anthropic reports input_tokens WITHOUT the cached ones; its adapter adds them (the neutral
# form's input_tokens is the total, the cache counts are parts of it).
ANTHROPIC_USAGE = {
    "input_tokens": 1_000,  # neither read nor written
    "cache_creation_input_tokens": 2_000,
    "cache_read_input_tokens": 10_000,
    "output_tokens": 500,
}
SONNET_USAGE = Usage(
    model=SONNET,
    provider="anthropic",
    input_tokens=1_000 + 2_000 + 10_000,
    cache_write_tokens=2_000,
    cache_read_tokens=10_000,
    output_tokens=500,
)
SONNET_COST = (
    1_000 * 3.00 / MTOK  # $0.003   uncached input
    + 2_000 * 3.75 / MTOK  # $0.0075  cache write (a premium over $3)
    + 10_000 * 0.30 / MTOK  # $0.003   cache read (a tenth of $3)
    + 500 * 15.00 / MTOK  # $0.0075  output
)  # = $0.021
SONNET_ALL_UNCACHED = 13_000 * 3.00 / MTOK + 500 * 15.00 / MTOK  # = $0.0465

# OpenAI's prompt_tokens already includes cached_tokens (and cache_write_tokens).
OPENAI_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": GPT_4O,
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "cached answer"},
        }
    ],
    "usage": {
        "prompt_tokens": 12_000,
        "completion_tokens": 1_000,
        "total_tokens": 13_000,
        "prompt_tokens_details": {"cached_tokens": 6_000, "cache_write_tokens": 2_000},
        "completion_tokens_details": {"reasoning_tokens": 300},
    },
}
GPT_4O_COST = (
    4_000 * 2.50 / MTOK  # $0.01    uncached input: 12,000 - 6,000 read - 2,000 written
    + 2_000 * 2.50 / MTOK  # $0.005   cache write, at the input price
    + 6_000 * 1.25 / MTOK  # $0.0075  cache read (half of $2.50)
    + 1_000 * 10.00 / MTOK  # $0.01    output, reasoning included
)  # = $0.0325


def test_the_hand_computed_figures() -> None:
    assert pytest.approx(0.021) == SONNET_COST
    assert pytest.approx(0.0465) == SONNET_ALL_UNCACHED
    assert pytest.approx(0.0325) == GPT_4O_COST


def test_anthropic_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    assert SONNET_USAGE.uncached_input_tokens == 1_000
    assert call_cost(SONNET_USAGE) == pytest.approx(SONNET_COST, rel=1e-12)
    uncached = Usage(model=SONNET, provider="anthropic", input_tokens=13_000, output_tokens=500)
    assert call_cost(uncached) == pytest.approx(SONNET_ALL_UNCACHED, rel=1e-12)


def test_one_hour_cache_writes_are_priced_at_the_one_hour_rate() -> None:
    """Of 2,000 written tokens, 1,500 are kept one hour: $6/MTok for Sonnet 4.5, not $3.75."""
    usage = Usage(**{**_fields(SONNET_USAGE), "cache_write_1h_tokens": 1_500})
    by_hand = (
        1_000 * 3.00 / MTOK  # uncached input
        + 500 * 3.75 / MTOK  # the 5-minute writes
        + 1_500 * 6.00 / MTOK  # the 1-hour writes
        + 10_000 * 0.30 / MTOK  # cache reads
        + 500 * 15.00 / MTOK  # output
    )  # = $0.024375
    assert by_hand == pytest.approx(0.024375)
    assert call_cost(usage) == pytest.approx(by_hand, rel=1e-12)
    assert usage_fields(usage)["cache_write_1h_tokens"] == 1_500


def test_the_one_hour_part_of_the_writes_is_cut_to_them() -> None:
    usage = Usage(input_tokens=100, cache_write_tokens=40, cache_write_1h_tokens=90)
    assert usage.cache_write_1h_tokens == 40
    assert Usage(input_tokens=100, cache_write_1h_tokens=5).cache_write_1h_tokens == 0
    mapped = Usage.from_mapping(
        {"input_tokens": 9, "cache_write_tokens": 4, "cache_write_1h_tokens": "3"}
    )
    assert mapped.cache_write_1h_tokens == 3


def test_set_price_prices_one_hour_writes_as_writes_unless_told() -> None:
    usage = Usage(
        model="house-model", input_tokens=1_000, cache_write_tokens=600, cache_write_1h_tokens=200
    )
    llmcache.set_price(
        "house-model", input_per_mtok=1.0, output_per_mtok=2.0, cache_write_per_mtok=1.5
    )
    assert call_cost(usage) == pytest.approx((400 * 1.0 + 600 * 1.5) / MTOK)
    llmcache.set_price(
        "house-model",
        input_per_mtok=1.0,
        output_per_mtok=2.0,
        cache_write_per_mtok=1.5,
        cache_write_1h_per_mtok=4.0,
    )
    assert call_cost(usage) == pytest.approx((400 * 1.0 + 400 * 1.5 + 200 * 4.0) / MTOK)
    with pytest.raises(llmcache.ConfigError, match="cache_write_1h_per_mtok"):
        llmcache.set_price(
            "house-model", input_per_mtok=1, output_per_mtok=1, cache_write_1h_per_mtok=-1
        )


def test_openai_chat_usage_is_mapped_one_to_one_and_priced() -> None:
    usage = openai_usage.usage_of(ChatCompletion.model_validate(OPENAI_CHAT))
    assert usage == Usage(
        model=GPT_4O,
        input_tokens=12_000,
        cache_read_tokens=6_000,
        cache_write_tokens=2_000,
        output_tokens=1_000,
        reasoning_tokens=300,
    )
    priced = Usage(**{**_fields(usage), "provider": "openai"})
    assert call_cost(priced) == pytest.approx(GPT_4O_COST, rel=1e-12)
    # The same shape as a plain dict (a model_dump(), or a user's function returning one).
    assert openai_usage.usage_of(OPENAI_CHAT) == usage


def test_openai_responses_usage_is_mapped() -> None:
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1_700_000_000,
            "model": GPT_4O,
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 12_000,
                "input_tokens_details": {"cached_tokens": 6_000, "cache_write_tokens": 2_000},
                "output_tokens": 1_000,
                "output_tokens_details": {"reasoning_tokens": 300},
                "total_tokens": 13_000,
            },
        }
    )
    usage = openai_usage.usage_of(response)
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        12_000,
        6_000,
        2_000,
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (1_000, 300)


def test_embeddings_usage_has_input_only() -> None:
    embedding = {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 7}}
    usage = openai_usage.usage_of(embedding)
    assert usage == Usage(model="text-embedding-3-small", input_tokens=7)


def test_results_without_a_known_usage_record_are_not_described() -> None:
    assert openai_usage.usage_of({"model": GPT_4O}) is None
    assert openai_usage.usage_of({"model": GPT_4O, "usage": {"tokens": 3}}) is None
    assert openai_usage.usage_of(object()) is None


def test_without_genai_prices_provider_list_a_url_is_its_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from genai_prices import data_snapshot

    def broken() -> object:
        raise RuntimeError("no price data")

    monkeypatch.setattr(data_snapshot, "get_snapshot", broken)
    openai_usage._matched_provider.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="llmcache"):
            assert openai_usage.provider_for_url("https://api.groq.com/v1") == "api.groq.com"
        assert "provider list is unavailable" in caplog.text
        assert openai_usage.provider_for_url("https://api.openai.com/v1") == "openai"
    finally:
        openai_usage._matched_provider.cache_clear()


def _fields(usage: Usage | None) -> dict[str, Any]:
    assert usage is not None
    return {name: getattr(usage, name) for name in Usage.__dataclass_fields__}


# -- the ledger: a hit saves what the original call really cost -----------------------------------
def _anthropic_hook(result: Any) -> dict[str, Any]:
    """A user's ``usage=`` hook converting Anthropic's counts to the neutral form."""
    reported = result["usage"]
    read, written = reported["cache_read_input_tokens"], reported["cache_creation_input_tokens"]
    return {
        "model": result["model"],
        "provider": "anthropic",
        "input_tokens": reported["input_tokens"] + read + written,
        "cache_read_tokens": read,
        "cache_write_tokens": written,
        "output_tokens": reported["output_tokens"],
    }


def test_a_hit_saves_what_the_original_call_cost_and_the_tokens_it_avoided(
    cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cache.cached(usage=_anthropic_hook)
    def ask(question: str) -> dict[str, Any]:
        return {"model": SONNET, "text": question.upper(), "usage": ANTHROPIC_USAGE}

    miss = ask("why cache?")
    hits = [ask("why cache?") for _ in range(3)]
    assert all(hit == miss for hit in hits)
    miss_info, hit_info = llmcache.info(miss), llmcache.last_info()
    assert miss_info is not None and hit_info is not None and hit_info.hit
    assert hit_info.cost_usd == pytest.approx(SONNET_COST, rel=1e-12)
    assert hit_info.saved_cost_usd == pytest.approx(SONNET_COST, rel=1e-12)

    report = cache.report()
    totals = report.totals
    assert (totals.misses, totals.hits) == (1, 3)
    assert totals.spent_usd == pytest.approx(SONNET_COST, rel=1e-12)
    assert totals.saved_usd == pytest.approx(3 * SONNET_COST, rel=1e-12)
    assert (totals.input_tokens, totals.cache_read_tokens, totals.cache_write_tokens) == (
        13_000,
        10_000,
        2_000,
    )
    assert (totals.saved_input_tokens, totals.saved_output_tokens) == (39_000, 1_500)
    assert (totals.saved_cache_read_tokens, totals.saved_cache_write_tokens) == (30_000, 6_000)

    data = report.to_dict()["totals"]
    assert data["saved_cache_read_tokens"] == 30_000 and data["saved_cache_write_tokens"] == 6_000
    assert data["saved_usd"] == pytest.approx(3 * SONNET_COST, rel=1e-12)
    monkeypatch.setenv("COLUMNS", "200")
    text = str(report)
    assert "of which cache r/w" in text and "30,000 / 6,000" in text
    assert "39,000 / 1,500" in text  # tokens avoided, beside the dollars
    assert "prompt cache" in text  # the note that says what the column is
    assert "30,000 / 6,000" in report._repr_html_()


def test_a_report_without_prompt_caching_shows_no_cache_column(cache: llmcache.Cache) -> None:
    @cache.cached(usage=lambda _: Usage(model=GPT_4O, input_tokens=10, output_tokens=2))
    def ask(question: str) -> str:
        return question

    ask("q")
    ask("q")
    lines = render_text(cache.report().grid().table(200), 200).splitlines()
    assert "tokens saved in/out" in lines[1] and "cache r/w" not in lines[1]
    assert cache.report().totals.saved_input_tokens == 10


def test_the_cache_column_goes_first_on_a_narrow_terminal(cache: llmcache.Cache) -> None:
    @cache.cached(usage=_anthropic_hook)
    def ask(question: str) -> dict[str, Any]:
        return {"model": SONNET, "text": question, "usage": ANTHROPIC_USAGE}

    ask("q")
    ask("q")
    grid = cache.report().grid()
    cache_column = grid.headers.index("of which cache r/w")
    assert grid.optional[0] == cache_column
    assert "cache r/w" not in render_text(grid.table(90), 90).splitlines()[1]


# -- put(usage=...): an adapter's own delivery priced like usage_of -------------------------------
def test_put_with_a_usage_prices_it(cache: llmcache.Cache) -> None:
    site = cache.site("vendor.stream", returns=str, provider="anthropic")
    site.put({"q": 1}, "streamed", latency_s=0.5, usage=SONNET_USAGE)
    assert site.get({"q": 1}) == "streamed"
    totals = cache.report().totals
    assert totals.spent_usd == pytest.approx(SONNET_COST, rel=1e-12)
    assert totals.saved_usd == pytest.approx(SONNET_COST, rel=1e-12)
    assert totals.saved_cache_read_tokens == 10_000


def test_aput_with_a_usage_takes_the_sites_provider_and_meta_wins(cache: llmcache.Cache) -> None:
    site = cache.site("vendor.astream", returns=str, provider="anthropic")
    no_provider = Usage(**{**_fields(SONNET_USAGE), "provider": None})

    async def record() -> None:
        await site.aput({"q": 1}, "one", latency_s=0.1, usage=no_provider)
        await site.aput({"q": 2}, "two", latency_s=0.1, usage=no_provider, meta={"cost_usd": 1.0})

    asyncio.run(record())
    assert cache.report().totals.spent_usd == pytest.approx(SONNET_COST + 1.0, rel=1e-12)


# -- unknown providers and models: unpriced, never $0 ---------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.together.xyz/v1", "together"),
        ("https://api.fireworks.ai/inference/v1", "fireworks"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("http://localhost:11434/v1", "localhost:11434"),  # Ollama: not a price list
        ("http://10.0.0.7:8000/v1", "10.0.0.7:8000"),  # vLLM
    ],
)
def test_the_price_list_follows_the_base_url(base_url: str, provider: str) -> None:
    assert openai_usage.provider_for_url(base_url) == provider


def test_a_vendor_genai_prices_knows_is_priced_from_its_own_list() -> None:
    on_groq = Usage(
        model="llama-3.3-70b-versatile", provider="groq", input_tokens=10_000, output_tokens=2_000
    )
    # Groq: $0.59 per million input tokens, $0.79 per million output tokens.
    assert call_cost(on_groq) == pytest.approx(10_000 * 0.59 / MTOK + 2_000 * 0.79 / MTOK)


def test_a_model_on_a_server_genai_prices_does_not_know_is_unpriced_not_free() -> None:
    for provider in ("localhost:11434", "my-proxy", "10.0.0.7:8000"):
        # Even a model name OpenAI prices: this server is not OpenAI (e.g. a local alias).
        assert call_cost(Usage(model="gpt-4o", provider=provider, input_tokens=10)) is None
    assert call_cost(Usage(model="llama3.1:8b", provider="groq", input_tokens=10)) is None
    assert call_cost(Usage(model="no-such-model-7", input_tokens=10)) is None
    assert call_cost(Usage(model=None, input_tokens=10)) is None


def test_a_wrapped_client_on_an_unknown_server_reports_its_calls_unpriced(
    cache: llmcache.Cache,
) -> None:
    with FakeOpenAIServer() as server:
        raw = OpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        client = cache.wrap(raw)
        message: Any = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(model="gpt-4o-mini", messages=message)
        client.chat.completions.create(model="gpt-4o-mini", messages=message)
        totals = cache.report().totals
        assert (totals.unpriced_misses, totals.unpriced_hits) == (1, 1)
        assert totals.spent is None and totals.saved is None  # unknown, not $0
        assert totals.saved_input_tokens > 0  # the tokens are still counted

        # Naming the price list (a gateway that forwards to OpenAI, say) prices the calls.
        as_openai = cache.wrap(raw, provider="openai", namespace="gateway")
        as_openai.chat.completions.create(model="gpt-4o-mini", messages=message)
        report = cache.report(by=("namespace",))
        gateway = next(row for row in report.rows if row.group["namespace"] == "gateway")
        assert gateway.spent_usd > 0 and gateway.unpriced_misses == 0
        raw.close()


def test_azure_clients_use_azures_list() -> None:
    raw = AzureOpenAI(
        api_key="k", api_version="2024-10-21", azure_endpoint="https://acme.openai.azure.com"
    )
    with llmcache.Cache(workspace="azure", tiers=["memory"]) as cache:
        default: Any = cache.wrap(raw)
        named: Any = cache.wrap(raw, provider="openai")
        assert default._sites.chat.provider == "azure"
        assert named._sites.chat.provider == "openai"
    raw.close()


def test_set_price_covers_a_model_no_price_list_has() -> None:
    local = Usage(model="llama3.1:8b", provider="localhost:11434", input_tokens=1_000_000)
    assert call_cost(local) is None
    llmcache.set_price("llama3.1:8b", input_per_mtok=0.2, output_per_mtok=0.4)
    assert call_cost(local) == pytest.approx(0.2)


# -- set_price and prompt-cache prices ------------------------------------------------------------
HOUSE = Usage(
    model="house-model",
    input_tokens=1_000_000,
    cache_read_tokens=400_000,
    cache_write_tokens=100_000,
    output_tokens=500_000,
)


def test_set_price_bills_unset_cache_prices_at_the_input_price() -> None:
    llmcache.set_price("house-model", input_per_mtok=2.0, output_per_mtok=8.0)
    # No discount and no premium assumed: all 1,000,000 input tokens at $2, output at $8.
    assert call_cost(HOUSE) == pytest.approx(1.0 * 2.0 + 0.5 * 8.0)


def test_set_price_with_cache_prices() -> None:
    llmcache.set_price(
        "house-model",
        input_per_mtok=2.0,
        output_per_mtok=8.0,
        cache_read_per_mtok=0.5,
        cache_write_per_mtok=2.5,
    )
    # 500,000 uncached x $2 + 400,000 read x $0.50 + 100,000 written x $2.50 + 500,000 x $8
    assert call_cost(HOUSE) == pytest.approx(1.0 + 0.2 + 0.25 + 4.0)
    llmcache.set_price(
        "house-model", input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=0.5
    )
    assert call_cost(HOUSE) == pytest.approx(1.0 + 0.2 + 0.2 + 4.0)  # writes at input


def test_set_price_overrides_genai_prices_data() -> None:
    llmcache.set_price(SONNET, input_per_mtok=1.0, output_per_mtok=1.0)
    assert call_cost(SONNET_USAGE) == pytest.approx(13_500 / MTOK)


@pytest.mark.parametrize(
    "prices",
    [
        {"input_per_mtok": -1.0, "output_per_mtok": 1.0},
        {"input_per_mtok": 1.0, "output_per_mtok": math.inf},
        {"input_per_mtok": 1.0, "output_per_mtok": 1.0, "cache_read_per_mtok": math.nan},
        {"input_per_mtok": 1.0, "output_per_mtok": 1.0, "cache_write_per_mtok": "2"},
    ],
)
def test_set_price_rejects_prices_that_are_not_prices(prices: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        llmcache.set_price("house-model", **prices)
    assert "house-model" not in _pricing._OVERRIDES


# -- a provider's odd counts never fail the call ---------------------------------------------------
def test_bad_counts_are_counted_as_zero_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcache import _usage

    monkeypatch.setattr(_usage, "_WARNED", set())  # each field warns once per process
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        usage = Usage(
            model="m",
            input_tokens=-5,
            output_tokens=2.5,  # type: ignore[arg-type]
            cache_read_tokens="7",  # type: ignore[arg-type]
            reasoning_tokens=True,  # type: ignore[arg-type]
            cost_usd=-1.0,
        )
        Usage(model="m", input_tokens=-6)
        assert Usage(cost_usd="a lot").cost_usd is None  # type: ignore[arg-type]
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (0, 0, 0)
    assert usage.reasoning_tokens == 0 and usage.cost_usd is None
    assert "input_tokens=-5" in caplog.text and "output_tokens=2.5" in caplog.text
    assert "input_tokens=-6" not in caplog.text  # once per field, not once per miss


def test_whole_floats_count_and_parts_are_cut_to_their_totals() -> None:
    usage = Usage(
        input_tokens=100.0,  # type: ignore[arg-type]
        cache_read_tokens=80,
        cache_write_tokens=50,  # only 20 are left of the input
        output_tokens=10,
        reasoning_tokens=30,
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (100, 80, 20)
    assert (usage.output_tokens, usage.reasoning_tokens) == (10, 10)
    assert usage.uncached_input_tokens == 0


def test_from_mapping_takes_the_neutral_names_and_numeric_text() -> None:
    usage = Usage.from_mapping(
        {
            "model": "m",
            "provider": "openai",
            "input_tokens": "120",
            "cache_read_tokens": 100,
            "cache_write_tokens": 10,
            "output_tokens": 9,
            "reasoning_tokens": 4,
            "cost_usd": "0.25",
            "cached_tokens": 999,  # not ours (any more): ignored
        }
    )
    assert usage == Usage(
        model="m",
        provider="openai",
        input_tokens=120,
        cache_read_tokens=100,
        cache_write_tokens=10,
        output_tokens=9,
        reasoning_tokens=4,
        cost_usd=0.25,
    )


def test_a_hook_reporting_nonsense_does_not_fail_the_call(cache: llmcache.Cache) -> None:
    @cache.cached(usage=lambda _: {"model": GPT_4O, "input_tokens": -3, "output_tokens": "x"})
    def ask(question: str) -> str:
        return question * 2

    assert ask("a") == "aa" and ask("a") == "aa"
    assert cache.report().totals.calls == 2


# -- old ledger data stays readable ----------------------------------------------------------------
OLD_METRICS = METRICS[: METRICS.index("unpriced_hits") + 1]


def test_counts_written_before_the_cache_metrics_read_as_zero(cache: llmcache.Cache) -> None:
    assert set(METRICS) - set(OLD_METRICS) == {
        "cache_read_tokens",
        "cache_write_tokens",
        "saved_cache_read_tokens",
        "saved_cache_write_tokens",
    }
    day = datetime.datetime.now(datetime.UTC).date()
    old = {"calls": 3.0, "hits": 2.0, "misses": 1.0, "spent_usd": 0.5, "saved_usd": 1.0}
    old.update(input_tokens=100.0, saved_input_tokens=200.0, output_tokens=10.0)
    fields = {cache.ledger.fields.seal(f"old-ns|old-model|{m}"): v for m, v in old.items()}
    ledger = cache.ledger
    assert cache._write_counters(ledger.key_for(epoch_day_of(day)), fields)
    assert cache._write_counters(ledger.days_key, {day.isoformat(): 1.0})

    report = cache.report()
    (row,) = report.rows
    assert (row.calls, row.hits, row.saved_usd, row.saved_input_tokens) == (3, 2, 1.0, 200)
    assert (row.cache_read_tokens, row.saved_cache_read_tokens) == (0, 0)
    assert (row.cache_write_tokens, row.saved_cache_write_tokens) == (0, 0)
    assert "cache r/w" not in str(report)
    assert ledger.integrity_failures == 0


def test_a_hit_on_an_entry_stored_without_cache_counts_saves_its_cost(
    cache: llmcache.Cache,
) -> None:
    site = cache.site("vendor.old", returns=str)
    old_meta = {"model": "m", "input_tokens": 40, "output_tokens": 4, "cost_usd": 0.125}
    site.put({"q": 1}, "old entry", latency_s=0.2, meta=old_meta)
    assert site.get({"q": 1}) == "old entry"
    totals = cache.report().totals
    assert totals.saved_usd == pytest.approx(0.125) and totals.saved_input_tokens == 40
    assert totals.saved_cache_read_tokens == 0


# -- properties -----------------------------------------------------------------------------------
# Models whose cache reads are discounted (all of these), with and without a write premium.
DISCOUNTED_READS = [("openai", GPT_4O), ("openai", "gpt-4o-mini"), ("anthropic", SONNET)]
NO_WRITE_PREMIUM = [("openai", GPT_4O), ("openai", "gpt-4o-mini")]
COUNT = st.integers(min_value=0, max_value=60_000)  # inputs stay below Sonnet's 200k tier


def _cost(provider: str, model: str, uncached: int, read: int, write: int, out: int) -> float:
    usage = Usage(
        model=model,
        provider=provider,
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=out,
    )
    cost = call_cost(usage)
    assert cost is not None
    return cost


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(DISCOUNTED_READS),
    COUNT,
    COUNT,
    COUNT,
    COUNT,
    st.sampled_from(range(4)),
    st.integers(min_value=1, max_value=5_000),
)
def test_cost_is_monotone_in_every_kind_of_token(
    model: tuple[str, str], uncached: int, read: int, write: int, out: int, kind: int, more: int
) -> None:
    counts = [uncached, read, write, out]
    before = _cost(*model, *counts)
    counts[kind] += more
    assert _cost(*model, *counts) >= before


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DISCOUNTED_READS), COUNT, COUNT, COUNT)
def test_cache_reads_never_cost_more_than_uncached_input(
    model: tuple[str, str], uncached: int, read: int, out: int
) -> None:
    assert _cost(*model, uncached, read, 0, out) <= _cost(*model, uncached + read, 0, 0, out)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NO_WRITE_PREMIUM), COUNT, COUNT, COUNT, COUNT)
def test_without_a_write_premium_no_cache_token_costs_more_than_uncached(
    model: tuple[str, str], uncached: int, read: int, write: int, out: int
) -> None:
    all_uncached = _cost(*model, uncached + read + write, 0, 0, out)
    assert _cost(*model, uncached, read, write, out) <= all_uncached


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
            ]
        ),
        st.one_of(
            st.integers(min_value=-(10**6), max_value=10**7),
            st.floats(allow_nan=True, allow_infinity=True),
            st.none(),
            st.text(max_size=3),
            st.booleans(),
        ),
    )
)
def test_any_reported_counts_make_a_consistent_usage(counts: dict[str, Any]) -> None:
    usage = Usage(model="m", **counts)
    assert min(usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) >= 0
    assert min(usage.cache_read_tokens, usage.cache_write_tokens) >= 0
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert all(type(getattr(usage, name)) is int for name in counts)


def test_the_openai_adapter_leaves_anthropic_messages_alone() -> None:
    """An Anthropic Message also has usage.input_tokens, but its cache counts are apart from
    them: the OpenAI adapter must not read it (the Anthropic adapter does)."""
    from llmcache_openai._usage import usage_of

    anthropic_shaped = {"type": "message", "model": "claude", "usage": {"input_tokens": 5}}
    assert usage_of(anthropic_shaped) is None
    openai_shaped = {"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    assert usage_of(openai_shaped) is not None
