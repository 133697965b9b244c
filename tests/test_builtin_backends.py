"""The backend contract suite on the built-in tiers: memory and disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache._disk import DiskTier
from llmcache._memory import MemoryTier
from tests.backend_contract import BackendContract


class TestMemoryContract(BackendContract):
    @pytest.fixture
    def backend(self) -> Iterator[MemoryTier]:
        tier = MemoryTier(max_bytes="64MiB")
        yield tier
        tier.close()

    # As a cache's tier, memory is the decoded fast tier (records by fingerprint), not a byte
    # tier holding signed entries: these two cache-level checks are the memory tier's own.
    def test_cache_miss_then_hit_from_this_tier(self, backend: MemoryTier) -> None:
        cache = llmcache.Cache(workspace="contract", tiers=[backend])
        calls: list[str] = []

        @cache.cached
        def ask(question: str) -> dict[str, Any]:
            calls.append(question)
            return {"answer": question.upper(), "n": [1, 2]}

        ask("hello")
        ask("hello")["n"].append(3)
        assert ask("hello") == {"answer": "HELLO", "n": [1, 2]}
        assert calls == ["hello"]
        assert cache.stats().tiers[0].hits == 2
        assert backend.size()[0] == 1

    def test_cache_tampered_entry_is_a_counted_miss(self, backend: MemoryTier) -> None:
        cache = llmcache.Cache(workspace="contract", tiers=[backend])

        @cache.cached
        def ask(question: str) -> str:
            return "answer " + question

        ask("a")
        # In-process records cannot be reached by another tenant; the byte-level API is
        # separate, so bytes written under the signed key are never served as a record.
        backend.set(ask.cache_key("a"), b"forged", None)
        assert ask("a") == "answer a"
        assert ask.cache_info().misses == 1


class TestDiskContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[DiskTier]:
        tier = DiskTier(tmp_path / "disk")
        yield tier
        tier.close()


def test_disk_tier_stays_within_its_bound_and_evicts_least_recently_used(
    tmp_path: Path,
) -> None:
    disk = DiskTier(tmp_path / "bounded", max_bytes=200_000)
    value = b"v" * 10_000
    disk.set("llmc:w:n:0.0:first", value, None)
    for i in range(15):
        disk.set(f"llmc:w:n:0.0:{i:03d}", value, None)
        assert disk.get("llmc:w:n:0.0:first") == value  # read again: recently used
    for i in range(15, 60):
        disk.set(f"llmc:w:n:0.0:{i:03d}", value, None)
        if i % 5 == 0:
            assert disk.get("llmc:w:n:0.0:first") == value  # still in use
    entries, size = disk.size()
    assert size <= 200_000 and entries < 25
    assert disk.get("llmc:w:n:0.0:first") == value  # kept: it was used recently
    assert disk.get("llmc:w:n:0.0:000") is None  # evicted: the oldest unused
