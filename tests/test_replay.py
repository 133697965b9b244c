"""Replay mode: every call must be a recorded hit; a miss raises `CacheMiss` with a hint that
names the arguments in which it differs from the nearest recorded call (never a value).
`record` and `refresh` complete the set, set by `Cache(mode=...)`, `Cache.mode`,
LLMCACHE_MODE and `options(mode=...)`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmcache
from llmcache import Backend, CacheMiss
from llmcache._disk import DiskTier
from llmcache._replay import RecordedCalls, ReplayCheck, nearest_difference
from tests.conftest import SECRET
from tests.servers.redis_server import RedisServer

PRIVATE = "the-private-prompt-text"  # an argument value no message may show


@pytest.fixture(autouse=True)
def _no_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMCACHE_MODE", raising=False)


class Provider:
    """A stand-in for a paid call: counts its calls, and fails when offline."""

    def __init__(self) -> None:
        self.calls = 0
        self.offline = False

    def __call__(self, prompt: str, temperature: float = 0.0, model: str = "m") -> str:
        if self.offline:
            raise AssertionError("the provider was called in replay mode")
        self.calls += 1
        return f"{prompt}/{temperature}/{model}/{self.calls}"


def _ask(cache: llmcache.Cache, provider: Provider) -> Any:
    @cache.cached(namespace="research")
    def ask(prompt: str, temperature: float = 0.0, model: str = "m") -> str:
        return provider(prompt, temperature, model)

    return ask


def _miss(call: Any, *args: Any, **kwargs: Any) -> CacheMiss:
    with pytest.raises(CacheMiss) as caught:
        call(*args, **kwargs)
    return caught.value


def test_replay_serves_what_was_recorded_and_names_the_argument_that_differs(
    disk_cache: llmcache.Cache,
) -> None:
    provider = Provider()
    ask = _ask(disk_cache, provider)
    recorded = ask(PRIVATE, temperature=0.2)
    ask("another prompt", model="big")
    disk_cache.mode = "replay"
    provider.offline = True
    assert ask(PRIVATE, temperature=0.2) == recorded
    error = _miss(ask, PRIVATE, temperature=0.7)
    assert error.differs == ["temperature"]
    assert error.identity is not None and error.identity.endswith("ask")
    assert error.namespace == "research"
    text = str(error)
    assert "replay mode" in text and error.identity in text and "'research'" in text
    assert "differs from the nearest of 2 recorded calls" in text and "temperature" in text
    assert PRIVATE not in text and "0.7" not in text and "0.2" not in text
    assert "--llmcache=record" in text
    assert isinstance(error, llmcache.CallRefused) and isinstance(error, LookupError)


def test_the_nearest_call_is_the_one_with_the_most_equal_arguments(
    memory_cache: llmcache.Cache,
) -> None:
    ask = _ask(memory_cache, Provider())
    ask("a", temperature=0.1, model="x")
    ask("b", temperature=0.2, model="y")
    memory_cache.mode = "replay"
    assert _miss(ask, "b", temperature=0.2, model="z").differs == ["model"]
    assert _miss(ask, "a", temperature=0.2, model="x").differs == ["temperature"]
    assert sorted(_miss(ask, "c", temperature=0.3, model="y").differs or []) == [
        "prompt",
        "temperature",
    ]


def test_a_function_never_recorded_says_so(memory_cache: llmcache.Cache) -> None:
    _ask(memory_cache, Provider())("a")
    memory_cache.mode = "replay"

    @memory_cache.cached(namespace="research")
    def other(prompt: str) -> str:
        raise AssertionError("called in replay mode")

    error = _miss(other, "a")
    assert error.differs is None
    assert "no call of" in str(error) and "was recorded in this namespace" in str(error)


def test_calls_of_another_namespace_generation_are_not_candidates(
    memory_cache: llmcache.Cache,
) -> None:
    ask = _ask(memory_cache, Provider())
    ask("a")
    memory_cache.invalidate("research")
    memory_cache.mode = "replay"
    assert _miss(ask, "a").differs is None


def test_the_same_arguments_under_another_sample(memory_cache: llmcache.Cache) -> None:
    ask = _ask(memory_cache, Provider())
    ask("a")
    memory_cache.mode = "replay"
    with llmcache.options(sample=2):
        error = _miss(ask, "a")
    assert error.differs == []
    assert "same arguments" in str(error) and "another sample" in str(error)


def test_the_hint_reads_the_tier_below_memory(tmp_path: Path) -> None:
    """A fresh process (an empty memory tier) finds the recorded calls in the disk tier."""
    provider = Provider()
    with llmcache.Cache(tiers=["memory", f"disk://{tmp_path}/d"]) as recording:
        _ask(recording, provider)("a", temperature=0.5)
    with llmcache.Cache(tiers=["memory", f"disk://{tmp_path}/d"], mode="replay") as replaying:
        ask = _ask(replaying, provider)
        assert _miss(ask, "a", temperature=0.9).differs == ["temperature"]
        provider.offline = True
        assert ask("a", temperature=0.5).startswith("a/0.5")


def test_the_hint_reads_redis_through_scan() -> None:
    provider = Provider()
    with RedisServer() as server:
        tiers = ["memory", server.patient_url]
        with llmcache.Cache(workspace="r", secret=SECRET, tiers=tiers) as recording:
            ask = _ask(recording, provider)
            for n in range(30):
                ask(f"prompt {n}")
            ask("prompt 7", model="big")
        with llmcache.Cache(workspace="r", secret=SECRET, tiers=tiers, mode="replay") as other:
            error = _miss(_ask(other, provider), "prompt 7", model="huge")
            assert error.differs == ["model"]
            assert "nearest of 31 recorded calls" in str(error)


class Unlisted(Backend):
    """A third-party tier without `scan` (the default raises NotImplementedError), or one
    that fails every read (`down`)."""

    def __init__(self, down: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.down = down
        self.name = "unlisted://"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Unlisted:
        return cls()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        return 0

    def incr_counters(self, key: str, deltas: Any) -> None:
        pass

    def read_counters(self, key: str) -> dict[str, float]:
        return {}

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.down:
            raise ConnectionError("down")
        return [self.data.get(key) for key in keys]

    def scan(self, prefix: str) -> Iterator[str]:
        if not self.down:
            return super().scan(prefix)
        return iter(list(self.data))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("down", [False, True], ids=["no scan", "down"])
def test_a_tier_that_cannot_be_listed_gives_no_hint_and_still_refuses(down: bool) -> None:
    tier = Unlisted(down)
    cache = llmcache.Cache(secret=SECRET, tiers=["memory", tier])
    ask = _ask(cache, Provider())
    ask("a")
    assert tier.data
    assert cache.memory is not None
    cache.memory.clear()
    cache.mode = "replay"
    error = _miss(ask, "b")
    assert error.differs is None
    assert "could be read" in str(error)


def test_entries_that_do_not_authenticate_are_skipped(tmp_path: Path) -> None:
    with llmcache.Cache(tiers=["memory", f"disk://{tmp_path}/d"]) as cache:
        ask = _ask(cache, Provider())
        ask("a")
        disk = cache.backends[1]
        assert isinstance(disk, DiskTier)
        for key in list(disk.scan("llmc:")):
            disk.set(key, b"\x02\x00" + b"x" * 40, None)  # a forged entry
        assert cache.memory is not None
        cache.memory.clear()
        cache.mode = "replay"
        assert _miss(ask, "a", temperature=1.0).differs is None


def test_the_search_is_bounded(
    monkeypatch: pytest.MonkeyPatch, memory_cache: llmcache.Cache
) -> None:
    ask = _ask(memory_cache, Provider())
    for n in range(5):
        ask(f"p{n}")
    memory_cache.mode = "replay"
    monkeypatch.setattr("llmcache._replay.HINT_ENTRIES", 3)
    error = _miss(ask, "p9", model="z")
    assert error.differs is not None and "model" in error.differs
    assert "nearest of 3 recorded calls" in str(error)
    monkeypatch.setattr("llmcache._replay.HINT_SECONDS", -1.0)  # no time left at all
    error = _miss(ask, "p9")
    assert error.differs is None and "stopped after" in str(error)


def test_async_functions_refuse_off_the_event_loop(disk_cache: llmcache.Cache) -> None:
    calls: list[str] = []

    @disk_cache.cached
    async def answer(prompt: str, style: str = "short") -> str:
        calls.append(prompt)
        return prompt.upper()

    async def main() -> None:
        assert await answer("a") == "A"
        disk_cache.mode = "replay"
        assert await answer("a") == "A"
        with pytest.raises(CacheMiss) as caught:
            await answer("a", style="long")
        assert caught.value.differs == ["style"]

    asyncio.run(main())
    assert calls == ["a"]


def test_refresh_mode_calls_again_and_re_records(memory_cache: llmcache.Cache) -> None:
    provider = Provider()
    ask = _ask(memory_cache, provider)
    first = ask("a")
    memory_cache.mode = "refresh"
    second = ask("a")
    assert provider.calls == 2 and second != first
    memory_cache.mode = "replay"
    assert ask("a") == second  # the re-recorded entry replaces the old one


def test_options_mode_overrides_the_cache_for_a_block(memory_cache: llmcache.Cache) -> None:
    provider = Provider()
    ask = _ask(memory_cache, provider)
    with llmcache.options(mode="replay"):
        _miss(ask, "a")
        with llmcache.options(mode="record"):
            recorded = ask("a")
        assert ask("a") == recorded
    memory_cache.mode = "replay"
    with llmcache.options(mode="refresh"):
        assert ask("a") != recorded
        # An inner mode ends the outer block's refresh: replay reads again.
        with llmcache.options(mode="replay"):
            assert ask("a") == f"a/0.0/m/{provider.calls}"
    with llmcache.options(mode="replay", refresh=True):
        assert "refresh=True" in str(_miss(ask, "a"))
    assert provider.calls == 2


def test_the_mode_comes_from_llmcache_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_MODE", "replay")
    assert llmcache.Cache(tiers=["memory"]).mode == "replay"
    assert llmcache.Cache(tiers=["memory"], mode="record").mode == "record"
    monkeypatch.setenv("LLMCACHE_TIERS", "memory")
    assert llmcache.get_default_cache().mode == "replay"

    @llmcache.cached
    def square(n: int) -> int:
        raise AssertionError("called in replay mode")

    assert "square" in str(_miss(square, 3))
    monkeypatch.setenv("LLMCACHE_MODE", "rewind")
    with pytest.raises(llmcache.ConfigError, match="LLMCACHE_MODE must be one of"):
        llmcache.Cache(tiers=["memory"])
    with pytest.raises(llmcache.ConfigError, match=r"Cache\.mode"):
        llmcache.Cache(tiers=["memory"], mode="record").mode = "play"


def test_the_check_keeps_its_latest_refusals(memory_cache: llmcache.Cache) -> None:
    (check,) = [c for c in memory_cache._gate.checks if isinstance(c, ReplayCheck)]
    ask = _ask(memory_cache, Provider())
    memory_cache.mode = "replay"
    for n in range(10):
        _miss(ask, f"p{n}")
    assert len(check.refusals) == 8 and "p9" not in check.refusals[-1]
    assert all(isinstance(message, str) for message in check.refusals)
    check.settle(None, None)  # nothing to settle


# -- the nearest call, as a property ----------------------------------------------------------
_ARGS = st.dictionaries(st.sampled_from("abcdef"), st.sampled_from(["1", "2", "3"]), max_size=6)


@given(mine=_ARGS, recorded=st.lists(_ARGS, max_size=6))
def test_nearest_difference_picks_a_call_with_the_most_equal_arguments(
    mine: dict[str, str], recorded: list[dict[str, str]]
) -> None:
    differs, compared = nearest_difference({"args": mine}, ({"args": r} for r in recorded))
    assert compared <= len(recorded)
    if not recorded:
        assert differs is None and compared == 0
        return
    assert differs is not None
    equal = [sum(1 for k, v in mine.items() if r.get(k) == v) for r in recorded]
    diffs = [{k for k in {*mine, *r} if mine.get(k) != r.get(k)} for r in recorded]
    # A recorded call with the most equal arguments, and of those the fewest differences,
    # differs in exactly these names.
    fewest = min(len(d) for d, e in zip(diffs, equal, strict=True) if e == max(equal))
    assert any(
        e == max(equal) and len(d) == fewest and set(differs) == d
        for d, e in zip(diffs, equal, strict=True)
    )
    if mine in recorded:
        assert differs == []


def test_recorded_calls_without_arguments_are_not_compared(memory_cache: llmcache.Cache) -> None:
    assert nearest_difference({"args": {"a": "1"}}, [{"site": "x"}, {"args": None}]) == (None, 0)
    found = RecordedCalls(memory_cache, "llmc:nothing:", "f")
    assert found.nearest(None) == (None, 0) and found.nearest({"site": "f"}) == (None, 0)


def test_a_small_dict_argument_is_compared_field_by_field(memory_cache: llmcache.Cache) -> None:
    @memory_cache.cached
    def run(prompt: str, config: dict[str, Any]) -> str:
        return prompt

    run("a", {"temperature": 0.1, "model": "m"})
    big = {f"field{n}": n for n in range(40)}  # too many fields to name one by one
    run("a", big)
    memory_cache.mode = "replay"
    assert _miss(run, "a", {"temperature": 0.2, "model": "m"}).differs == ["config.temperature"]
    assert _miss(run, "a", {**big, "field3": -1}).differs == ["config"]
