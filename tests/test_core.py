"""The core cache: tiers, promotion, TTLs, options, invalidation, stats and errors."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import Backend
from llmcache._disk import DiskTier
from llmcache._memory import MemoryTier
from tests.clocks import FakeClock, wait_until
from tests.conftest import SECRET


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, value: Any) -> Any:
        self.calls.append(value)
        return value


class BrokenBackend(Backend):
    """A tier that fails every operation, like a disk that went read-only or a dead server."""

    shared = True

    def __init__(self) -> None:
        self.name = "broken://"
        self.attempts = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BrokenBackend:
        return cls()

    def _fail(self, *args: Any) -> Any:
        self.attempts += 1
        raise ConnectionError("tier is down")

    get = set = delete = delete_prefix = incr_counters = read_counters = _fail  # type: ignore[assignment]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._fail()  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def test_miss_then_hit_returns_independent_objects(memory_cache: llmcache.Cache) -> None:
    seen = Counter()

    @memory_cache.cached
    def ask(question: str) -> dict[str, Any]:
        seen(question)
        return {"answer": question, "items": [1]}

    first = ask("q")
    first["items"].append("mutated by the caller")
    second = ask("q")
    assert second == {"answer": "q", "items": [1]}
    second["items"].clear()
    assert ask("q") == {"answer": "q", "items": [1]}
    assert seen.calls == ["q"]
    info = ask.cache_info()
    assert (info.hits, info.misses) == (2, 1)


async def test_async_functions_are_cached(memory_cache: llmcache.Cache) -> None:
    seen = Counter()

    @memory_cache.cached
    async def ask(question: str) -> str:
        await asyncio.sleep(0)
        return str(seen(question))

    assert await ask("a") == "a"
    assert await ask("a") == "a"
    assert await ask("b") == "b"
    assert seen.calls == ["a", "b"]
    assert asyncio.iscoroutinefunction(ask)


def test_exceptions_are_never_cached(memory_cache: llmcache.Cache) -> None:
    attempts = Counter()

    @memory_cache.cached
    def flaky(x: int) -> int:
        if len(attempts.calls) < 2:
            attempts(x)
            raise RuntimeError("provider error")
        return x * 2

    for _ in range(2):
        with pytest.raises(RuntimeError):
            flaky(1)
    assert flaky(1) == 2
    assert flaky(1) == 2
    assert flaky.cache_info().misses == 1


def test_disk_tier_survives_a_new_cache_and_promotes_to_memory(tmp_path: Path) -> None:
    tiers = ["memory", f"disk://{tmp_path}/d"]
    seen = Counter()

    def make(cache: llmcache.Cache) -> Any:
        @cache.cached(namespace="n", ttl=60)
        def ask(question: str) -> str:
            return str(seen(question))

        return ask

    with llmcache.Cache(workspace="w", tiers=tiers) as first:
        assert make(first)("q") == "q"
    with llmcache.Cache(workspace="w", tiers=tiers) as second:  # like a kernel restart
        ask = make(second)
        assert ask("q") == "q"
        assert llmcache.info(ask("q")).tier == "memory"  # type: ignore[union-attr]
        stats = second.stats()
        assert [t.hits for t in stats.tiers] == [1, 1]
        assert seen.calls == ["q"]
        record = second.memory.lookup(next(iter(second.memory._entries)))  # type: ignore[union-attr]
        assert record is not None and 50 < record.expires - time.time() <= 60  # TTL kept


def test_ttl_expires_entries(tmp_path: Path) -> None:
    clock = FakeClock()
    tiers = ["memory", f"disk://{tmp_path}/d"]
    cache = llmcache.Cache(workspace="w", tiers=tiers, ttl=0.3, clock=clock)
    seen = Counter()

    @cache.cached
    def ask(q: str) -> str:
        return str(seen(q))

    ask("q")
    clock.advance(0.29)
    ask("q")
    assert seen.calls == ["q"]  # fresh until its TTL is over
    clock.advance(0.02)
    ask("q")
    assert seen.calls == ["q", "q"]  # expired in memory and on disk alike


def test_options_bypass_refresh_no_store_max_age_ttl() -> None:
    clock = FakeClock()
    cache = llmcache.Cache(workspace="test", tiers=["memory"], clock=clock)
    seen = Counter()

    @cache.cached
    def ask(q: str) -> str:
        return f"{q}:{len(seen(q) and seen.calls)}"

    assert ask("q") == "q:1"
    with llmcache.options(bypass=True):
        assert ask("q") == "q:2"
    assert ask("q") == "q:1"  # bypass stored nothing
    with llmcache.options(refresh=True):
        assert ask("q") == "q:3"
    assert ask("q") == "q:3"  # refresh stored the fresh value
    with llmcache.options(no_store=True):
        assert ask("other") == "other:4"
    assert ask("other") == "other:5"
    clock.advance(0.05)
    with llmcache.options(max_age=0.06):
        assert ask("q") == "q:3"  # 0.05 s old: young enough
    with llmcache.options(max_age=0.04):
        assert ask("q") == "q:6"  # too old for this caller: called again
    with llmcache.options(ttl=0.05):
        assert ask("short") == "short:7"
    clock.advance(0.049)
    assert ask("short") == "short:7"
    clock.advance(0.002)
    assert ask("short") == "short:8"
    with llmcache.options(namespace="elsewhere"):
        assert ask("q") == "q:9"
        assert ":elsewhere:" in ask.cache_key("q")
    with llmcache.options(sample=1):
        assert ask("q") == "q:10"
        assert ask("q") == "q:10"
    with pytest.raises(llmcache.ConfigError), llmcache.options(ttl=-1):
        pass


def test_options_are_scoped_to_their_thread_and_task(memory_cache: llmcache.Cache) -> None:
    seen: list[bool] = []

    def other_thread() -> None:
        seen.append(llmcache._options.current_options() is None)

    async def tasks() -> None:
        async def child() -> bool:
            return llmcache._options.current_options() is not None

        with llmcache.options(bypass=True):
            inside = asyncio.create_task(child())
        outside = asyncio.create_task(child())
        seen.extend([await inside, not await outside])

    with llmcache.options(bypass=True):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    asyncio.run(tasks())
    assert seen == [True, True, True]


def test_invalidate_namespace_is_o1_and_leaves_others(disk_cache: llmcache.Cache) -> None:
    seen = Counter()

    @disk_cache.cached(namespace="a")
    def in_a(q: str) -> str:
        return "a" + str(seen(q))

    @disk_cache.cached(namespace="b")
    def in_b(q: str) -> str:
        return "b" + str(seen(q))

    in_a("1"), in_b("1")
    disk_cache.invalidate("a")
    in_a("1"), in_b("1")
    assert seen.calls == ["1", "1", "1"]


def test_delete_by_key_and_clear_only_this_workspace(tmp_path: Path) -> None:
    tiers = ["memory", f"disk://{tmp_path}/shared"]
    mine = llmcache.Cache(workspace="mine", tiers=tiers)
    theirs = llmcache.Cache(workspace="theirs", tiers=tiers)
    seen = Counter()

    @mine.cached
    def ask(q: str) -> str:
        return str(seen(q))

    @theirs.cached
    def their_ask(q: str) -> str:
        return str(seen(q))

    ask("x"), ask("y"), their_ask("x")
    mine.delete(ask.cache_key("x"))
    ask("x"), ask("y")
    assert seen.calls == ["x", "y", "x", "x"]
    mine.clear()
    disk = mine._tiers[0].backend
    # Only theirs is left (generation records, `llmc-meta:` keys, are not entries).
    rows = disk._connection().execute("SELECT key FROM entries")  # type: ignore[attr-defined]
    entries = [key for (key,) in rows if key.startswith("llmc:")]
    assert len(entries) == 1 and entries[0].startswith(theirs._keys.workspace_prefix())
    ask("y"), their_ask("x")
    assert seen.calls == ["x", "y", "x", "x", "y"]


def test_unstorable_results_are_returned_and_counted(memory_cache: llmcache.Cache) -> None:
    sentinel = object()

    @memory_cache.cached
    def make(q: str) -> Any:
        return sentinel

    assert make("a") is sentinel
    assert make("a") is sentinel
    assert make.cache_info().unstorable == 2
    assert memory_cache.stats().unstorable == 2


def test_a_failing_tier_never_fails_the_call() -> None:
    broken = BrokenBackend()
    cache = llmcache.Cache(workspace="w", secret=SECRET, tiers=["memory", broken])
    seen = Counter()

    @cache.cached
    def ask(q: str) -> str:
        return str(seen(q))

    for i in range(20):
        assert ask(f"q{i % 5}") == f"q{i % 5}"
    assert seen.calls == ["q0", "q1", "q2", "q3", "q4"]  # memory still served the repeats
    health = cache.health()
    assert not health.ok and health.tiers[1].state in ("open", "half-open")
    assert "tier is down" in (health.tiers[1].last_error or "")
    assert broken.attempts <= 6  # the breaker stopped calling it
    assert cache._tiers[0].queued_writes == 5  # paid results wait to be written back
    assert "DEGRADED" in str(health)


def test_queued_writes_land_when_the_tier_recovers(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path / "d")
    cache = llmcache.Cache(workspace="w", tiers=["memory", disk])
    real_set = disk.set
    disk.set = BrokenBackend()._fail  # type: ignore[method-assign]

    @cache.cached
    def ask(q: str) -> str:
        return q

    for q in "abcd":
        ask(q)
    tier = cache._tiers[0]
    assert tier.queued_writes == 4
    assert all(disk.get(ask.cache_key(q)) is None for q in "abcd")
    disk.set = real_set  # type: ignore[method-assign]
    later = iter(range(10**6))

    def replayed() -> bool:
        ask(f"later{next(later)}")  # ordinary traffic: the breaker probes and, on success, replays
        return not tier.queued_writes

    # The breaker's cooldown runs on the monotonic clock, in real time: poll until it is over.
    wait_until(replayed, timeout=10, what="the queue replayed", interval=0.05)
    assert all(disk.get(ask.cache_key(q)) is not None for q in "abcd")


def test_shared_tier_without_secret_is_a_config_error() -> None:
    with pytest.raises(llmcache.ConfigError, match="LLMCACHE_SECRET"):
        llmcache.Cache(tiers=["memory", BrokenBackend()])


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(llmcache.ConfigError) as raised:
        llmcache.Cache(tiers=["memcached://localhost"])
    assert "memory" in str(raised.value) and "disk" in str(raised.value)


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmcache import _registry

    class BrokenEntryPoint:
        name = "redis"

        def load(self) -> Any:
            raise ImportError("No module named 'redis'")

    monkeypatch.setattr(_registry, "_entry_points", lambda group: {"redis": BrokenEntryPoint()})
    with pytest.raises(llmcache.MissingDependencyError, match=r"llmcache\[redis\]"):
        llmcache.Cache(secret=SECRET, tiers=["redis://localhost"])


def test_bad_names_and_settings_are_config_errors() -> None:
    with pytest.raises(llmcache.ConfigError, match="workspace name"):
        llmcache.Cache(workspace="a:b")
    with pytest.raises(llmcache.ConfigError, match="namespace name"):
        llmcache.Cache(tiers=["memory"]).cached(namespace="has space")(lambda: 1)
    with pytest.raises(llmcache.ConfigError, match="too short"):
        llmcache.Cache(secret="short")
    with pytest.raises(llmcache.ConfigError, match="memory tier must come first"):
        llmcache.Cache(tiers=["disk", "memory"])
    with pytest.raises(llmcache.ConfigError, match="max_bytes"):
        llmcache.Cache(tiers=["memory://?max_bytes=lots"])


def test_embedded_default_generates_a_private_secret(tmp_path: Path) -> None:
    directory = tmp_path / "embedded"
    first = llmcache.Cache(tiers=["memory", f"disk://{directory}"])
    second = llmcache.Cache(tiers=["memory", f"disk://{directory}"])
    secret_file = directory / "secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert first._keys.entry_key == second._keys.entry_key


def test_default_cache_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_WORKSPACE", "envws")
    monkeypatch.setenv("LLMCACHE_TIERS", "memory")
    monkeypatch.setenv("LLMCACHE_TTL", "120")
    seen = Counter()

    @llmcache.cached(namespace="research")
    def ask(q: str) -> str:
        return str(seen(q))

    ask("q"), ask("q")
    assert seen.calls == ["q"]
    assert ask.cache_key("q").startswith("llmc:envws#")
    assert ":research:" in ask.cache_key("q")
    assert llmcache.get_default_cache().ttl == 120
    monkeypatch.setenv("LLMCACHE_TTL", "soon")
    llmcache.set_default_cache(None)
    with pytest.raises(llmcache.ConfigError, match="LLMCACHE_TTL"):
        llmcache.get_default_cache()


def test_disable_sends_every_call_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_DISABLE", "1")
    monkeypatch.setenv("LLMCACHE_TIERS", "memory")
    seen = Counter()

    @llmcache.cached
    def ask(q: str) -> str:
        return str(seen(q))

    ask("q"), ask("q")
    assert seen.calls == ["q", "q"]
    assert ask.cache_info().bypassed == 2


def test_info_on_hits_and_misses(memory_cache: llmcache.Cache) -> None:
    @memory_cache.cached(namespace="n")
    def ask(q: str) -> list[str]:
        return [q]

    started = time.perf_counter()
    miss = ask("q")
    miss_took = time.perf_counter() - started
    hit = ask("q")
    miss_info, hit_info = llmcache.info(miss), llmcache.info(hit)
    assert miss_info is not None and not miss_info.hit and miss_info.tier is None
    assert hit_info is not None and hit_info.hit and hit_info.tier == "memory"
    assert hit_info.key == miss_info.key == ask.cache_key("q")
    # What the hit saved is the real call's time: more than nothing, less than the whole miss.
    assert hit_info.saved_time_s is not None and 0 < hit_info.saved_time_s < miss_took
    assert llmcache.info(["never cached"]) is None
    assert "hit" in hit_info._repr_html_()


def test_usage_hook_feeds_the_ledger(memory_cache: llmcache.Cache) -> None:
    def usage(result: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 100}

    @memory_cache.cached(usage=usage)
    def ask(q: str) -> dict[str, str]:
        return {"text": q}

    ask("q")
    ask("q")
    info = llmcache.info(ask("q"))
    assert info is not None and info.model == "gpt-4o-mini"
    assert info.cost_usd is not None and info.cost_usd > 0
    assert info.saved_cost_usd == info.cost_usd


def test_memory_tier_stays_within_its_byte_bound() -> None:
    memory = MemoryTier(max_bytes="2MiB", max_item_bytes="256KiB")
    cache = llmcache.Cache(tiers=[memory])

    @cache.cached
    def big(i: int) -> str:
        return "x" * 100_000 + str(i)

    for i in range(200):
        assert big(i).endswith(str(i))
    entries, size = memory.size()
    assert size <= 2 * 1024 * 1024
    assert 10 <= entries < 30

    @cache.cached
    def huge(i: int) -> str:
        return "y" * 400_000

    huge(1), huge(1)
    assert huge.cache_info().misses == 2  # over the per-item cap: never held
    assert memory.oversized >= 1


def test_stats_and_health_render(disk_cache: llmcache.Cache) -> None:
    @disk_cache.cached
    def ask(q: str) -> str:
        return q

    ask("a"), ask("a"), ask("b")
    stats = disk_cache.stats()
    assert (stats.calls, stats.hits, stats.misses) == (3, 1, 2)
    assert stats.tiers[0].name == "memory" and stats.tiers[1].entries == 2
    text = str(stats)
    assert "hit rate 33.3%" in text and "memory" in text
    assert "<table>" in stats._repr_html_()
    health = disk_cache.health()
    assert health.ok and [t.state for t in health.tiers] == ["closed", "closed"]


def test_memory_tier_under_concurrent_reads_and_evictions() -> None:
    """Lock-free reads racing locked evictions: every call still returns its own result."""
    import random

    memory = MemoryTier(max_bytes="200KiB")
    cache = llmcache.Cache(tiers=[memory])

    @cache.cached
    def page(i: int) -> str:
        return "x" * 2000 + str(i)

    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(10_000):
                i = rng.randrange(150)  # more pages than fit: constant eviction
                assert page(i).endswith(str(i))
        except Exception as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert memory.size()[1] <= 200 * 1024
    assert page.cache_info().hits > 0 and page.cache_info().misses > 150


def test_ledger_counts_survive_a_process_that_exits_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import llmcache\n"
        f"cache = llmcache.Cache(workspace='exit', tiers=['memory', 'disk://{tmp_path}/d'])\n"
        "ask = cache.cached(lambda q: q)\n"
        "ask('a'); ask('a'); ask('a')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    cache = llmcache.Cache(workspace="exit", tiers=["memory", f"disk://{tmp_path}/d"])
    totals = cache.report().totals
    assert (totals.hits, totals.misses) == (2, 1)


def test_unknown_model_cost_is_unknown_until_a_price_is_set(memory_cache: llmcache.Cache) -> None:
    def usage(result: object) -> dict[str, object]:
        return {"model": "house-model-7", "input_tokens": 2_000_000, "output_tokens": 1_000_000}

    @memory_cache.cached(usage=usage)
    def ask(q: str) -> str:
        return q

    ask("before"), ask("before")
    before = llmcache.info(ask("before"))
    assert before is not None and before.cost_usd is None and before.saved_cost_usd is None
    llmcache.set_price("house-model-7", input_per_mtok=1.0, output_per_mtok=4.0)
    ask("after"), ask("after")
    after = llmcache.info(ask("after"))
    assert after is not None and after.cost_usd == pytest.approx(2.0 + 4.0)
    report = memory_cache.report()
    assert report.totals.unpriced_hits == 2 and report.totals.saved_usd == pytest.approx(12.0)


def test_breaker_times_reads_and_recovers_its_fast_path(tmp_path: Path) -> None:
    from llmcache._resilience import GuardedTier

    disk = DiskTier(tmp_path / "d")
    disk.set("k", b"v", None)
    tier = GuardedTier(disk, failure_threshold=2, cooldown=0.05)
    assert tier.get("k") == b"v"
    assert tier.latency_ms is not None  # the first read is timed
    # Threads racing on the countdown can take it below zero: that read is still timed.
    tier.latency_ms = None
    tier._untimed = -3
    assert tier.get("k") == b"v"
    assert tier.latency_ms is not None
    real_get = disk.get
    disk.get = BrokenBackend()._fail  # type: ignore[method-assign]
    assert tier.get("k") is None and tier.get("k") is None  # failures are misses
    assert tier.state == "open"
    assert tier.get("k") is None and tier.counters.skipped == 1  # open: not even tried
    disk.get = real_get  # type: ignore[method-assign]
    # The breaker's cooldown is real time (monotonic), not the cache's clock: wait it out.
    wait_until(lambda: tier.state == "half-open", timeout=5, what="the cooldown over")
    assert tier.get("k") == b"v"  # the probe succeeds and closes the breaker
    assert tier.state == "closed" and tier.counters.errors == 2
    assert [tier.get("k") for _ in range(100)] == [b"v"] * 100  # the fast path is back


class TtlIgnoringBackend(Backend):
    """A store that keeps entries past their TTL, as a lagging replica or a clock skew may."""

    shared = True

    def __init__(self) -> None:
        self.name = "ttl-ignoring://"
        self.data: dict[str, bytes] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> TtlIgnoringBackend:
        return cls()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.data if key.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        pass

    def read_counters(self, key: str) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


@pytest.mark.parametrize("memory", [False, True])
def test_an_entry_past_its_ttl_is_a_miss_even_if_the_tier_still_has_it(memory: bool) -> None:
    backend = TtlIgnoringBackend()
    tiers: list[Any] = ["memory", backend] if memory else [backend]
    clock = FakeClock()
    cache = llmcache.Cache(workspace="w", secret=SECRET, tiers=tiers, clock=clock)
    seen = Counter()

    @cache.cached(ttl=0.2)
    def ask(q: str) -> str:
        return str(seen(q))

    assert ask("q") == "q" and ask("q") == "q"
    assert seen.calls == ["q"]
    clock.advance(0.25)
    assert backend.data  # the tier still holds the stale entry...
    assert ask("q") == "q"
    assert seen.calls == ["q", "q"]  # ...but the entry's own expiry made it a miss
    assert cache._tiers[0].counters.misses >= 1


@pytest.mark.parametrize("ttl", [float("nan"), -1, 0, "10", float("inf")])
def test_a_site_refuses_a_ttl_that_is_not_seconds(ttl: Any) -> None:
    """`Cache.site(ttl=...)` (the extension point) checks its ttl as `cached(ttl=...)` does."""
    cache = llmcache.Cache(workspace="site-ttl", tiers=["memory"])
    with pytest.raises(llmcache.ConfigError, match=r"site\(ttl=\.\.\.\)"):
        cache.site("tests.site", ttl=ttl)
    assert cache.site("tests.site", ttl=1.5).ttl == 1.5
