"""The hot path (`llmcache/_hot.py`) gives what the general flow gives, for random calls.

Two caches with the same secret, workspace, tiers and clock see the same random sequence
of calls, clock moves and memory evictions. One serves each call the way users' calls are
served (the hot path when no option applies); the other inside ``llmcache.options()`` with
nothing set, which sends every call the long way (`_sync/_flow.py`, `_async/_flow.py`) with
options that change nothing. Values, keys, real calls, per-site and per-tier counters,
`llmcache.last_info()` and the ledger must agree after every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmcache
from llmcache.ext import MISS
from tests.clocks import FakeClock

SECRET = "s" * 32
TTL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _usage(result: Any) -> llmcache.Usage:
    return llmcache.Usage(model="m", input_tokens=7, output_tokens=3, cost_usd=0.001)


async def _with_info(call: Any) -> tuple[Any, Any]:
    return await call, llmcache.last_info()


class World:
    """One cache, its cached functions (sync and async, str and dict results), and counts."""

    def __init__(self, tiers: list[str], clock: Clock) -> None:
        self.cache = llmcache.Cache(
            workspace="hot", secret=SECRET, tiers=tiers, clock=clock, ttl=TTL
        )
        self.real_calls = 0

        @self.cache.cached(usage=_usage)
        def text(x: int) -> str:
            self.real_calls += 1
            return f"answer {x}"

        @self.cache.cached(usage=_usage)
        def record(x: int) -> dict[str, Any]:
            self.real_calls += 1
            return {"x": x, "items": [x, x + 1]}

        @self.cache.cached(usage=_usage)
        async def atext(x: int) -> str:
            self.real_calls += 1
            return f"async answer {x}"

        self.functions: dict[str, Callable[[int], Any]] = {
            "text": text,
            "record": record,
            "atext": atext,
        }

    def call(self, name: str, x: int, general: bool) -> tuple[Any, Any]:
        """(value, how `last_info` describes the call). Keys are compared within a world:
        each disk file draws its own random generation tokens, so two worlds' keys differ."""
        function = self.functions[name]
        scope = llmcache.options() if general else contextlib.nullcontext()
        with scope:
            value = function(x)
            if asyncio.iscoroutine(value):  # last_info is per task: read it in the task
                value, info = asyncio.run(_with_info(value))
            else:
                info = llmcache.last_info()
            key = function.cache_key(x)  # type: ignore[attr-defined]
        assert info is not None
        assert info.key in (key, None)  # None: the result was not stored
        tier = None if info.tier is None else info.tier.split(":")[0]  # not the folder
        return value, (info.hit, tier, info.key is None, info.namespace, info.age_s is None)

    def counters(self) -> Any:
        stats = self.cache.stats()
        per_site = {n: tuple(f.cache_info()) for n, f in self.functions.items()}  # type: ignore[attr-defined]
        tiers = [
            (t.name.split(":")[0], t.hits, t.misses, t.integrity_failures) for t in stats.tiers
        ]
        return per_site, tiers, stats.hits, stats.misses, self.real_calls

    def ledger(self) -> Any:
        self.cache.flush()
        totals = self.cache.report().totals
        return (
            totals.calls,
            totals.hits,
            totals.misses,
            totals.input_tokens,
            round(totals.spent_usd, 9),
            round(totals.saved_usd, 9),
        )


TIER_SETS = {
    "memory": lambda d: ["memory"],
    "memory+disk": lambda d: ["memory", f"disk://{d}/disk"],
    "disk": lambda d: [f"disk://{d}/disk"],
}
steps = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from(["text", "record", "atext"]), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.floats(0, 12), st.just(0)),
        st.tuples(st.just("evict"), st.just(""), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


@contextlib.contextmanager
def two_worlds(tier_set: str) -> Iterator[tuple[World, World, Clock]]:
    clock = Clock()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        hot = World(TIER_SETS[tier_set](a), clock)
        general = World(TIER_SETS[tier_set](b), clock)
        try:
            yield hot, general, clock
        finally:
            hot.cache.close()
            general.cache.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tier_set=st.sampled_from(sorted(TIER_SETS)), script=steps)
def test_the_hot_path_equals_the_general_path(tier_set: str, script: list[Any]) -> None:
    with two_worlds(tier_set) as (hot, general, clock):
        for step, what, x in script:
            if step == "tick":
                clock.now += what
            elif step == "evict":
                for world in (hot, general):
                    if world.cache.memory is not None:
                        world.cache.memory.clear()
            else:
                assert hot.call(what, x, general=False) == general.call(what, x, general=True)
            assert hot.counters() == general.counters()
        assert hot.ledger() == general.ledger()


def test_the_general_scope_really_takes_the_long_way(monkeypatch: Any) -> None:
    """The comparison above is not vacuous: under options() a hit is served by the flow
    (its `serve` step), and without options by the hot path (which never calls it)."""
    from llmcache._sync import _flow

    served: list[str] = []
    real_serve = _flow.serve

    def counting_serve(*args: Any) -> Any:
        served.append("flow")
        return real_serve(*args)

    monkeypatch.setattr(_flow, "serve", counting_serve)
    with two_worlds("memory") as (hot, general, _):
        hot.call("text", 1, general=False)
        hot.call("text", 1, general=False)
        assert served == []
        general.call("text", 1, general=True)
        general.call("text", 1, general=True)
        assert served == ["flow"]
        assert hot.counters() == general.counters()


def test_references_the_hot_path_holds_stay_the_caches_own(tmp_path: Path) -> None:
    """`HotPath` keeps references to the cache's tier list, noted hits and key memo: they
    must still be the cache's own after the operations that change them."""
    cache = llmcache.Cache(workspace="refs", tiers=["memory", f"disk://{tmp_path}/d"])

    @cache.cached
    def f(x: int) -> int:
        return x

    f(1)
    hot = f.cache_site.hot  # type: ignore[attr-defined]
    cache.invalidate()
    cache.clear()
    cache.flush()
    f(2)
    assert hot._tiers is cache._tiers
    assert hot._noted is cache.ledger.noted_hits
    assert hot._signed_memo is cache._keys.signed_memo
    cache.close()


def test_the_memory_tiers_dicts_the_hot_path_reads_stay_the_tiers_own() -> None:
    """`memory_hit` reads the memory tier's entries and recency marks directly: evictions,
    expiry, `clear` and `invalidate` must change those dicts in place, never rebind them."""
    clock = FakeClock()
    cache = llmcache.Cache(
        workspace="refs", tiers=["memory://?max_bytes=64KiB"], ttl=60, clock=clock
    )

    @cache.cached
    def f(x: int) -> list[int]:
        return [x]

    hot = f.cache_site.hot  # type: ignore[attr-defined]
    memory = cache.memory
    assert memory is not None
    for x in range(400):  # far over 64 KiB: evictions
        f(x)
        f(x)
    clock.advance(61)  # every entry expired: dropped when looked up
    assert f(399) == [399] and f.cache_info().misses == 401
    cache.invalidate()
    cache.clear()
    assert hot._entries_get.__self__ is memory._entries
    assert hot._recent is memory._recent
    f(7)
    assert f(7) == [7] and llmcache.info(f(7)).tier == "memory"  # type: ignore[union-attr]
    cache.close()


get_steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["get", "aget", "put"]), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.integers(0, 12)),
        st.tuples(st.just("evict"), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


def _look(site: Any, step: str, x: int, general: bool) -> Any:
    """A site's get/aget/put of question x; (value, how last_info describes it) for a look."""
    request = {"question": x}
    with llmcache.options() if general else contextlib.nullcontext():
        if step == "put":
            site.put(request, {"answer": x}, latency_s=0.5)
            return None
        value = site.get(request) if step == "get" else asyncio.run(site.aget(request))
        info = llmcache.last_info()
    if value is MISS:
        return MISS
    assert info is not None
    return value, info.hit, info.tier.split(":")[0] if info.tier else None


def _site_counts(site: Any) -> dict[str, int]:
    counters = site.counters
    return {name: getattr(counters, name) for name in counters.__slots__}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tier_set=st.sampled_from(sorted(TIER_SETS)), plan=get_steps)
def test_site_get_gives_what_the_general_get_gives(tier_set: str, plan: list[Any]) -> None:
    """`CallSite.get`/`aget` (the hot path, as framework adapters use them) and the same
    lookups under `options()` (the flow) give equal values, counters, ledger and info."""
    with two_worlds(tier_set) as (hot, general, clock):
        hot_site = hot.cache.site("tests.get_site", ttl=TTL)
        general_site = general.cache.site("tests.get_site", ttl=TTL)
        for step, x in plan:
            if step == "tick":
                clock.now += x
            elif step == "evict":
                for world in (hot, general):
                    if world.cache.memory is not None:
                        world.cache.memory.clear()
            else:
                assert _look(hot_site, step, x, False) == _look(general_site, step, x, True)
            assert _site_counts(hot_site) == _site_counts(general_site)
            assert hot.counters() == general.counters()
        assert hot.ledger() == general.ledger()
