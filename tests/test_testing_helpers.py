"""llmcache.testing's helpers for users' own tests."""

from __future__ import annotations

import subprocess
import sys

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


def test_llmcache_testing_imports_without_the_openai_sdk() -> None:
    """The servers are exported lazily: ``count_calls`` needs neither SDK, and a server whose
    SDK is missing fails when asked for, with an ImportError."""
    code = """
import sys
sys.modules["openai"] = None  # as if not installed: importing it raises ImportError
import llmcache.testing
from llmcache.testing import count_calls
try:
    llmcache.testing.FakeOpenAIServer
except ImportError as exc:
    print(type(exc).__name__, count_calls.__name__)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "ModuleNotFoundError count_calls"
    import llmcache.testing
    from llmcache.testing._openai_server import FakeOpenAIServer

    assert llmcache.testing.FakeOpenAIServer is FakeOpenAIServer
