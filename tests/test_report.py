"""`cache.report()`: money spent and saved, from the ledger, checked against genai-prices."""

from __future__ import annotations

import datetime
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given
from hypothesis import strategies as st
from openai import OpenAI

import llmcache
from llmcache import ConfigError, MissingDependencyError
from llmcache._render import render_text
from llmcache._report import first_day_of, format_usd
from llmcache.testing import FakeOpenAIServer
from tests.openai_data import MESSAGES, MODEL, user

pytest_plugins = ["tests.openai_fixtures"]  # server, cache, client, aclient, raw_client


def _price(usage: Any, model: str = MODEL) -> float:
    """What genai-prices says a call with this usage costs, computed independently."""
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    priced = calc_price(
        Usage(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cache_read_tokens=cached or 0,
        ),
        model,
        provider_id="openai",
    )
    return float(priced.total_price)


def test_saved_cost_is_the_price_of_the_cached_calls_times_their_hits(
    cache: llmcache.Cache, client: Any
) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    second = client.chat.completions.create(model=MODEL, messages=user("Another question"))
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=user("Another question"))

    report = cache.report()
    expected_saved = 3 * _price(first.usage) + 1 * _price(second.usage)
    expected_spent = _price(first.usage) + _price(second.usage)
    (row,) = report.rows
    assert row.group == {"namespace": "default", "model": MODEL}
    assert (row.calls, row.hits, row.misses) == (6, 4, 2)
    assert row.hit_rate == pytest.approx(4 / 6)
    assert row.saved_usd == pytest.approx(expected_saved, rel=1e-9)
    assert row.spent_usd == pytest.approx(expected_spent, rel=1e-9)
    assert row.saved_input_tokens == 3 * first.usage.prompt_tokens + second.usage.prompt_tokens
    assert row.saved_output_tokens == (
        3 * first.usage.completion_tokens + second.usage.completion_tokens
    )
    assert row.saved_s > 0 and row.spent_s > 0
    assert report.totals.saved_usd == pytest.approx(expected_saved, rel=1e-9)
    assert (row.unpriced_hits, row.unpriced_misses) == (0, 0)


def test_unknown_prices_are_shown_as_unknown(cache: llmcache.Cache, client: Any) -> None:
    for _ in range(2):
        client.chat.completions.create(model="my-local-model", messages=MESSAGES)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    report = cache.report()
    local = next(r for r in report.rows if r.group["model"] == "my-local-model")
    assert (local.unpriced_misses, local.unpriced_hits) == (1, 1)
    assert local.spent is None and local.saved is None
    assert local.to_dict()["saved_usd"] is None
    text = str(report)
    line = next(x for x in text.splitlines() if "my-local-model" in x)
    assert "unknown" in line and "$0" not in line
    total_line = next(x for x in text.splitlines() if x.startswith("total"))
    assert "≥ $" in total_line or "> $0" in total_line  # at least the priced part
    assert report.totals.saved_usd > 0  # the priced part is still counted


def test_groups_and_since(cache: llmcache.Cache, client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    with llmcache.options(namespace="research"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    by_namespace = cache.report(by=("namespace",))
    assert [r.group for r in by_namespace.rows] == [
        {"namespace": "default"},
        {"namespace": "research"},
    ]
    today = datetime.datetime.now(datetime.UTC).date()
    by_day = cache.report(by=("day",), since=7)
    assert [r.group["day"] for r in by_day.rows] == [today.isoformat()]
    assert by_day.totals.calls == 3
    for since in (today, today.isoformat(), datetime.datetime.now(datetime.UTC), 1, None):
        assert cache.report(since=since, by=()).totals.calls == 3
    tomorrow = today + datetime.timedelta(days=1)
    assert cache.report(since=tomorrow).totals.calls == 0
    with pytest.raises(ConfigError):
        cache.report(by=("colour",))
    with pytest.raises(ConfigError):
        cache.report(since="last week")
    with pytest.raises(ConfigError):
        cache.report(since=-1)


def test_first_day_of() -> None:
    today = 20_000
    assert first_day_of(None, today) is None
    assert first_day_of(1, today) == today
    assert first_day_of(7, today) == today - 6
    assert first_day_of("1970-01-02", today) == 1
    aware = datetime.datetime(
        1970, 1, 2, 23, 30, tzinfo=datetime.timezone(-datetime.timedelta(hours=2))
    )
    assert first_day_of(aware, today) == 2  # 01:30 UTC on Jan 3rd


def test_the_report_survives_a_restart_and_spans_processes(tmp_path: Path) -> None:
    tiers = ["memory", f"disk://{tmp_path}/shared"]
    with FakeOpenAIServer() as srv:
        for _ in range(2):  # two "processes" (caches) one after the other, same disk tier
            with llmcache.Cache(workspace="w", tiers=tiers) as cache:
                client = cache.wrap(OpenAI(base_url=srv.base_url, api_key="t", max_retries=0))
                client.chat.completions.create(model=MODEL, messages=MESSAGES)
                client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with llmcache.Cache(workspace="w", tiers=tiers) as cache:
            report = cache.report()
    assert (report.totals.calls, report.totals.hits, report.totals.misses) == (4, 3, 1)


def test_pending_counts_are_included_without_a_flush(cache: llmcache.Cache, client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert cache.report().totals.hits == 1  # report() flushes first


def test_text_html_json(cache: llmcache.Cache, client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    report = cache.report()
    lines = render_text(report.grid().table(200), 200).splitlines()
    assert lines[0].startswith("llmcache report, workspace 'adapter'")
    header, rule = lines[1], lines[2]
    assert "hit rate" in header and set(rule) == {"─"}
    assert "50.0%" in lines[3] and lines[5].startswith("total")
    assert len({len(line) for line in lines[3:6]}) == 1  # aligned, right-aligned numbers
    html = report._repr_html_()
    assert "<table" in html and "gpt-4o-mini" in html and "class=num" in html
    data = json.loads(report.to_json())
    assert data["totals"]["calls"] == 2 and data["rows"][0]["model"] == MODEL
    assert report.to_dict()["by"] == ["namespace", "model"]


def test_format_usd() -> None:
    assert format_usd(0) == "$0"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(1_234_567.891) == "$1,234,567.89"
    assert format_usd(0.5) == "$0.50"
    assert format_usd(0.0123) == "$0.012"
    assert format_usd(0.0995) == "$0.10"
    assert format_usd(0.00046) == "$0.00046"
    assert format_usd(0.0000456) == "<$0.0001"
    assert format_usd(0.00000004) == "<$0.0001"  # not "$0.0000000400"
    assert format_usd(0.00000004, smallest=0) == "$0.00000004"  # plot ticks


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_money_is_short_and_reads_as_money(value: float) -> None:
    """Every amount: "$" then digits, at most two significant digits below a dollar."""
    text = format_usd(value)
    assert re.fullmatch(r"<\$0\.0001|\$0|\$[0-9,]+\.[0-9]{2}|\$0\.0*[1-9][0-9]?", text), text
    if value >= 0.0001:
        shown = float(text.lstrip("$").replace(",", ""))
        assert shown == pytest.approx(value, rel=0.05, abs=0.005)
    assert len(text) <= 14 or value >= 1e6


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal(
    cache: llmcache.Cache, client: Any, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for namespace in ("customer-support", "research"):
        with llmcache.options(namespace=namespace):
            for model in (MODEL, "my-local-model-v2-instruct"):
                for _ in range(2):
                    client.chat.completions.create(model=model, messages=MESSAGES)
    monkeypatch.setenv("COLUMNS", str(width))
    text = str(cache.report())
    assert max(len(line) for line in text.splitlines()) <= width
    assert "my-local-model-v2-instruct" in text  # names are not cut mid-word
    assert "customer-support" in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "8" in total.split() and "50.0%" in total  # the numbers are whole


def test_unpriced_calls_agree_with_the_money_cells(cache: llmcache.Cache) -> None:
    """A plain function has nothing to price: its money cells and its unpriced count are
    all "-", and the title shows no "$0"."""

    @cache.cached
    def shout(text: str) -> str:
        return text.upper()

    shout("a")
    shout("a")
    report = cache.report()
    lines = render_text(report.grid().table(200), 200).splitlines()
    row = lines[3].split()
    assert row[:2] == ["default", "-"]
    spent, saved, unpriced = row[5], row[6], row[-1]
    assert (spent, saved, unpriced) == ("-", "-", "-")
    assert "$" not in lines[0]
    assert any("nothing to price" in line for line in lines)


def test_pandas_plot_and_standalone_html(
    cache: llmcache.Cache, client: Any, tmp_path: Path
) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model="my-local-model", messages=MESSAGES)
    report = cache.report()
    frame = report.to_pandas()
    assert list(frame["model"]) == [MODEL, "my-local-model"]
    assert frame["calls"].sum() == 3
    assert math.isnan(frame.loc[1, "spent_usd"]) and frame.loc[0, "saved_usd"] > 0
    figure = report.plot()
    assert len(figure.axes) == 2
    path = report.to_html(tmp_path / "report.html")
    text = path.read_text()
    # The dashboard's look: headline figures, then the daily bars as inline SVG, the table.
    assert text.startswith("<!DOCTYPE html>") and "<svg class=bars" in text
    assert text.index("id='figure-saved'") < text.index("<svg") < text.index("<table")


def test_missing_notebook_extra_is_a_clear_error(
    cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    report = cache.report()
    with pytest.raises(MissingDependencyError, match=r"llmcache\[notebook\]"):
        report.plot()
    with pytest.raises(MissingDependencyError, match="pandas"):
        report.to_pandas()
    str(report)  # text needs neither


def test_plain_functions_report_calls_without_money(cache: llmcache.Cache) -> None:
    @cache.cached
    def shout(text: str) -> str:
        return text.upper()

    shout("a")
    shout("a")
    row = cache.report().rows[0]
    assert (row.calls, row.hits) == (2, 1)
    line = render_text(cache.report().grid().table(200), 200).splitlines()[3]
    assert "unknown" not in line and " - " in f" {line} "


def test_the_plot_starts_on_the_first_day_with_data(cache: llmcache.Cache, client: Any) -> None:
    """No invented $0 point on the day before the data."""
    pytest.importorskip("matplotlib")
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    report = cache.report()
    figure = report.plot()
    money = figure.axes[0]
    first_day = datetime.date.fromisoformat(report.daily[0].group["day"])
    for line in money.lines:
        days = [_as_date(x) for x in line.get_xdata()]
        assert days[0] == first_day and len(days) == len(report.daily)
    saved = next(line for line in money.lines if line.get_label() == "saved by hits")
    assert list(saved.get_ydata()) == pytest.approx([report.totals.saved_usd])
    low, high = money.get_xlim()  # the point is framed by a day, not by years
    assert high - low <= 2


def _as_date(value: Any) -> datetime.date:
    from matplotlib.dates import num2date

    if isinstance(value, datetime.date):
        return value
    return num2date(value).date()  # type: ignore[no-untyped-call]


def test_info_shows_saved_cost_the_same_way_on_a_hit_and_a_miss(client: Any) -> None:
    miss = client.chat.completions.create(model=MODEL, messages=user("info money"))
    hit = client.chat.completions.create(model=MODEL, messages=user("info money"))
    shown = {}
    for name, result in (("miss", miss), ("hit", hit)):
        described = llmcache.info(result)
        assert described is not None
        text = str(described)
        line = next(x for x in text.splitlines() if x.startswith("saved_cost_usd"))
        shown[name] = line.split()[-1]
        assert "e-" not in text  # no 4e-05 style floats anywhere
    assert shown["miss"] == "$0"
    assert re.fullmatch(r"(<)?\$[0-9.,]+", shown["hit"]), shown
    assert shown["hit"] == format_usd(llmcache.info(hit).saved_cost_usd)  # type: ignore[union-attr,arg-type]


def test_report_is_fast_for_an_empty_workspace(cache: llmcache.Cache) -> None:
    started = time.perf_counter()
    report = cache.report(since=3650)
    assert time.perf_counter() - started < 1
    assert report.totals.calls == 0 and len(report.daily) == 1
