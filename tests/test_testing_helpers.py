"""llmcache.testing's helpers for users' own tests."""

from __future__ import annotations

import pytest

import llmcache
from llmcache.testing import assert_calls, count_calls


def test_count_calls_counts_real_calls_hits_and_bypasses(memory_cache: llmcache.Cache) -> None:
    @memory_cache.cached
    def summarise(text: str) -> str:
        return text[:3]

    summarise("warm up")
    with count_calls(memory_cache) as calls:
        summarise("abcdef")
        summarise("abcdef")
        summarise("warm up")
        with llmcache.options(bypass=True):
            summarise("abcdef")
    assert (calls.real, calls.hits, calls.bypassed, calls.calls) == (1, 2, 1, 4)


def test_assert_calls_fails_with_a_useful_message(memory_cache: llmcache.Cache) -> None:
    @memory_cache.cached
    def ask(q: str) -> str:
        return q

    with assert_calls(memory_cache, real=1, hits=1):
        ask("q")
        ask("q")
    with (
        pytest.raises(AssertionError, match="expected 0 real call"),
        assert_calls(memory_cache, real=0),
    ):
        ask("new")
