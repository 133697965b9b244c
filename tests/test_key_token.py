"""`CallSite.token` / `CallSite.get_by`: `get` without keying again, for an adapter that can
find a request's token for less. A token is `get` itself, counts included, and stands only for
the generation it was made in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import llmcache
from llmcache.ext import MISS, KeyToken

REQUEST = {"prompt": "p" * 500, "llm_string": "model"}


def _counts(cache: llmcache.Cache) -> tuple[int, int]:
    stats = cache.stats()
    return stats.hits, stats.misses


def test_a_token_finds_what_get_finds_and_counts_the_same(memory_cache: llmcache.Cache) -> None:
    site = memory_cache.site("test.token")
    assert site.token(REQUEST) is None  # the namespace is not loaded before its first call
    assert site.get(REQUEST) is MISS
    token = site.token(REQUEST)
    assert isinstance(token, KeyToken)
    assert site.get_by(token, REQUEST) is MISS
    site.put(REQUEST, {"answer": [1]}, latency_s=0.5)
    before = _counts(memory_cache)
    by_token, by_request = site.get_by(token, REQUEST), site.get(REQUEST)
    assert by_token == by_request == {"answer": [1]} and by_token is not by_request
    assert _counts(memory_cache) == (before[0] + 2, before[1])
    assert llmcache.info(by_token).hit and llmcache.info(by_token).tier == "memory"
    assert site.token(REQUEST) == token  # the same request, the same generation


def test_a_token_reads_the_tiers_below_memory(tmp_path: Path) -> None:
    with llmcache.Cache(workspace="w", tiers=[f"disk://{tmp_path}/c"]) as cache:
        site = cache.site("test.token")
        site.put(REQUEST, ["stored"], latency_s=0.1)
        token = site.token(REQUEST)
        assert token is not None
        found = site.get_by(token, REQUEST)
        assert found == ["stored"] and llmcache.info(found).tier.startswith("disk:")


def test_a_token_outlives_no_clear(memory_cache: llmcache.Cache) -> None:
    site = memory_cache.site("test.token")
    site.put(REQUEST, "old", latency_s=0.1)
    token = site.token(REQUEST)
    assert token is not None and site.get_by(token, REQUEST) == "old"
    site.clear()
    assert site.get_by(token, REQUEST) is MISS  # the old generation's entry is gone
    site.put(REQUEST, "new", latency_s=0.1)
    assert site.get_by(token, REQUEST) == "new"  # the stale token keys the request anew
    fresh = site.token(REQUEST)
    assert fresh is not None and fresh.fingerprint != token.fingerprint
    memory_cache.invalidate()
    assert site.get_by(fresh, REQUEST) is MISS


def test_options_and_a_serving_switch_take_the_long_way(memory_cache: llmcache.Cache) -> None:
    site = memory_cache.site("test.token")
    site.put(REQUEST, "default", latency_s=0.1)
    token = site.token(REQUEST)
    assert token is not None
    with llmcache.options(namespace="elsewhere"):
        assert site.token(REQUEST) is None
        assert site.get_by(token, REQUEST) is MISS  # the other namespace's: not stored there
    with llmcache.options(bypass=True):
        assert site.get_by(token, REQUEST) is MISS
    with llmcache.options(mode="replay"):
        assert site.get_by(token, REQUEST) == "default"
    assert site.get_by(token, REQUEST) == "default"


def test_a_request_the_hit_path_cannot_key_has_no_token(memory_cache: llmcache.Cache) -> None:
    site = memory_cache.site("test.token")
    assert site.token({"tagged": {1, 2}}) is None  # a set needs the canonical form's tags
    site.put({"tagged": {1, 2}}, "set", latency_s=0.1)
    assert site.get({"tagged": {1, 2}}) == "set"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_after_fork_a_token_waits_for_the_namespace_to_load(tmp_path: Path) -> None:
    with llmcache.Cache(workspace="w", tiers=["memory", f"disk://{tmp_path}/c"]) as cache:
        site = cache.site("test.token")
        site.put(REQUEST, "parent", latency_s=0.1)
        token = site.token(REQUEST)
        assert token is not None
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                ok = not site.namespace.loaded and site.get_by(token, REQUEST) == "parent"
                os.write(write, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.waitpid(child, 0)
        assert answer == b"1"


async def test_aget_by_reads_memory_then_the_tiers_below_without_blocking(tmp_path: Path) -> None:
    with llmcache.Cache(workspace="w", tiers=["memory", f"disk://{tmp_path}/c"]) as cache:
        site = cache.site("test.token")
        await site.aput(REQUEST, ["stored"], latency_s=0.1)
        token = site.token(REQUEST)
        assert token is not None
        found = await site.aget_by(token, REQUEST)
        assert found == ["stored"] and llmcache.info(found).tier == "memory"
        cache.memory.clear()  # type: ignore[union-attr]
        found = await site.aget_by(token, REQUEST)
        assert found == ["stored"] and llmcache.info(found).tier.startswith("disk:")  # type: ignore[union-attr]
        # While current, the token decides: the request is read only when it is stale.
        assert await site.aget_by(token, {"prompt": "other", "llm_string": "m"}) == ["stored"]
        site.clear()
        assert await site.aget_by(token, REQUEST) is MISS  # stale: the request keyed anew


def test_a_token_of_another_site_or_cache_is_never_taken(memory_cache: llmcache.Cache) -> None:
    mine, other = memory_cache.site("test.token"), memory_cache.site("test.other")
    mine.put(REQUEST, "mine", latency_s=0.1)
    token = mine.token(REQUEST)
    assert token is not None and other.get_by(token, REQUEST) is MISS  # keyed at `other`
    with llmcache.Cache(workspace="elsewhere", tiers=["memory"]) as stranger:
        theirs = stranger.site("test.token")
        assert theirs.get_by(token, REQUEST) is MISS
    assert mine.get_by(token, REQUEST) == "mine"


def test_the_memory_hit_is_in_c_when_built_and_python_otherwise(
    memory_cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools
    import sys

    from llmcache import _hot

    hot = memory_cache.site("test.c_hit").hot
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") in ("", "0"):
        assert isinstance(hot.memory_hit, functools.partial)
        assert hot.memory_hit.args[1] == hot.memory_hit_python
    monkeypatch.setenv("LLMCACHE_PURE_PYTHON", "1")
    assert _hot._load_c_memory_hit() is None
    monkeypatch.delenv("LLMCACHE_PURE_PYTHON")
    monkeypatch.setitem(sys.modules, "llmcache._speedups", None)  # not built
    assert _hot._load_c_memory_hit() is None
