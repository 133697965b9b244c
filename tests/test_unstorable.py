"""A paid result that cannot be stored is returned, counted and logged once (issue 9, item 11).

Before: orjson's TypeError (an int beyond 64 bits, a str with a lone surrogate) reached the
caller after the real call had succeeded, and its result was lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

import llmcache

UNSTORABLE = [
    pytest.param(lambda: 2**70, id="int-beyond-64-bits"),
    pytest.param(lambda: -(2**64), id="negative-int-beyond-64-bits"),
    pytest.param(lambda: "half a pair: \ud800", id="lone-surrogate"),
    pytest.param(lambda: {1: "a"}, id="dict-with-int-keys"),
    pytest.param(lambda: float("nan"), id="nan"),
    pytest.param(lambda: [1.0, float("inf")], id="inf-in-a-list"),
    pytest.param(lambda: {"n": 2**70}, id="big-int-in-a-dict"),
    pytest.param(lambda: ("\udfff",), id="surrogate-in-a-tuple"),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


@pytest.fixture(params=["memory", "memory+disk"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    tiers = ["memory"] if request.param == "memory" else ["memory", f"disk://{tmp_path}"]
    made = llmcache.Cache(workspace="ws", secret="s" * 32, tiers=tiers)
    yield made
    made.close()


@pytest.mark.parametrize("make", UNSTORABLE)
def test_sync_call_returns_an_unstorable_result(
    cache: llmcache.Cache, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    @cache.cached
    def paid(question: str) -> Any:
        calls.append(question)
        return make()

    with caplog.at_level(logging.WARNING, logger="llmcache"):
        first = paid("q")
        second = paid("q")
    assert _same(first, make()) and _same(second, make())
    assert calls == ["q", "q"]  # not stored, so called again
    assert cache.stats().unstorable == 2
    assert paid.cache_info().unstorable == 2
    warnings = [r for r in caplog.records if "not cached" in r.getMessage()]
    assert len(warnings) == 1  # logged once per function


@pytest.mark.parametrize("make", UNSTORABLE)
def test_async_call_returns_an_unstorable_result(cache: llmcache.Cache, make: Any) -> None:
    calls = []

    @cache.cached
    async def paid(question: str) -> Any:
        calls.append(question)
        return make()

    async def main() -> tuple[Any, Any]:
        return await paid("q"), await paid("q")

    first, second = asyncio.run(main())
    assert _same(first, make()) and _same(second, make())
    assert calls == ["q", "q"]
    assert cache.stats().unstorable == 2


def test_a_storable_result_after_an_unstorable_one_is_cached(cache: llmcache.Cache) -> None:
    calls = []

    @cache.cached
    def paid(n: int) -> Any:
        calls.append(n)
        return 2**70 if n == 0 else n

    assert paid(0) == 2**70
    assert paid(1) == 1 and paid(1) == 1
    assert calls == [0, 1]
    assert cache.stats().unstorable == 1
