"""The backend contract suite on the built-in tiers: memory and disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmcache._disk import DiskTier
from llmcache._memory import MemoryTier
from tests.backend_contract import BackendContract


class TestMemoryContract(BackendContract):
    ttl_slack = 0.05
    holds_signed_entries = False

    @pytest.fixture
    def backend(self) -> Iterator[MemoryTier]:
        tier = MemoryTier(max_bytes="64MiB")
        yield tier
        tier.close()


class TestDiskContract(BackendContract):
    ttl_slack = 0.05

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[DiskTier]:
        tier = DiskTier(tmp_path / "disk")
        yield tier
        tier.close()
