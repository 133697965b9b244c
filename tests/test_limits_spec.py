"""Rate limits as written (`Cache(limits=...)`): the text and typed forms, and bad specs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmcache
from llmcache import ConfigError, Limit
from llmcache._limits._spec import UNITS, Rate, parse_limits, parse_rates


def test_the_example_of_the_docs() -> None:
    rules = parse_limits({"gpt-4o-mini": "500/min; 200000 tokens/min", "*": "60/min"})
    assert rules[(None, "gpt-4o-mini")] == (
        Rate(500, "requests", 60.0, "500/min"),
        Rate(200000, "tokens", 60.0, "200000 tokens/min"),
    )
    assert rules[(None, "*")] == (Rate(60, "requests", 60.0, "60/min"),)


def test_the_typed_form_is_the_text_form() -> None:
    typed = parse_limits({"gpt-4o": Limit(requests=500, tokens=200_000, per="min")})
    text = parse_limits({"gpt-4o": "500/min; 200000 tokens/min"})
    assert typed == text
    assert llmcache.Limit is Limit


@pytest.mark.parametrize(
    ("text", "amount", "kind", "window"),
    [
        ("100/10s", 100, "requests", 10.0),
        ("5 requests / 1.5 min", 5, "requests", 90.0),
        ("200_000 tokens/hour", 200_000, "tokens", 3600.0),
        ("1/day", 1, "requests", 86400.0),
        ("3 calls/2sec", 3, "requests", 2.0),
        ("7 tok/h", 7, "tokens", 3600.0),
    ],
)
def test_text_forms(text: str, amount: int, kind: str, window: float) -> None:
    (rate,) = parse_rates(text, "limits['m']")
    assert (rate.amount, rate.kind, rate.window_s) == (amount, kind, window)


def test_namespaces_and_lists() -> None:
    rules = parse_limits(
        {
            "*": ["10/s", Limit(requests=100, per=60)],
            "research": {"gpt-4o": "2/min", "*": Limit(tokens=1000, per="10s")},
        }
    )
    assert [r.text for r in rules[(None, "*")]] == ["10/s", "100/60s"]
    assert rules[("research", "gpt-4o")] == (Rate(2, "requests", 60.0, "2/min"),)
    assert rules[("research", "*")] == (Rate(1000, "tokens", 10.0, "1000 tokens/10s"),)


@given(
    amount=st.integers(1, 10**9),
    count=st.one_of(st.none(), st.integers(1, 999)),
    unit=st.sampled_from(sorted(UNITS)),
    tokens=st.booleans(),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_any_well_formed_text_reads_back(
    amount: int, count: int | None, unit: str, tokens: bool, spaces: str
) -> None:
    kind = f"{spaces}tokens" if tokens else ""
    text = f"{amount}{kind}{spaces}/{spaces}{'' if count is None else count}{unit}"
    (rate,) = parse_rates(text, "limits['m']")
    assert rate.amount == amount
    assert rate.kind == ("tokens" if tokens else "requests")
    assert rate.window_s == pytest.approx((count or 1) * UNITS[unit])
    # Its normalised text reads back as the same limit.
    assert parse_rates(rate.text, "again") == (rate,)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"gpt-4o": "500/fortnight"}, "'500/fortnight'"),
        ({"gpt-4o": "500 per min"}, "'500 per min'"),
        ({"gpt-4o": "0/min"}, "allows nothing"),
        ({"gpt-4o": "10 bananas/min"}, "'10 bananas/min'"),
        ({"gpt-4o": ""}, "limits['gpt-4o'] is empty"),
        ({"gpt-4o": 500}, "limits['gpt-4o'] must be a text"),
        ({"gpt-4o": "5/0s"}, "unknown window"),
        ({"research": {}}, "limits['research'] (a namespace) is empty"),
        ({"research": {"*": {"x": "1/s"}}}, "limits['research'] holds model names"),
        ({"bad name!": {"*": "1/s"}}, "limits namespace name 'bad name!'"),
        ({"": "1/s"}, "not ''"),
        ({}, "limits must be a dict"),
        ("500/min", "limits must be a dict"),
    ],
)
def test_bad_specs_name_the_bad_part(spec: Any, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_limits(spec)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({}, "needs requests= and/or tokens="),
        ({"requests": 0}, "requests must be a whole number"),
        ({"tokens": 1.5}, "tokens must be a whole number"),
        ({"requests": True}, "requests must be a whole number"),
        ({"requests": 5, "per": "week"}, "unknown window 'week'"),
        ({"requests": 5, "per": 0}, "more than 0 seconds"),
        ({"requests": 5, "per": float("nan")}, "more than 0 seconds"),
    ],
)
def test_bad_typed_limits_fail_where_written(arguments: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Limit(**arguments)
    assert says in str(raised.value)


def test_a_cache_refuses_a_bad_spec_when_built() -> None:
    with pytest.raises(ConfigError, match="500/minutes-ish"):
        llmcache.Cache(tiers=["memory"], limits={"gpt-4o": "500/minutes-ish"})
