"""Shared fixtures: every test gets its own cache folder and a clean default cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# LiteLLM (also under DSPy) fetches its model price map from GitHub when imported unless
# told to use the copy it ships: tests reach nothing but 127.0.0.1.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

import llmcache

SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches the user's real cache folder or inherits LLMCACHE_* settings."""
    for name in (
        "LLMCACHE_WORKSPACE",
        "LLMCACHE_SECRET",
        "LLMCACHE_TIERS",
        "LLMCACHE_TTL",
        "LLMCACHE_DISABLE",
        "LLMCACHE_MODE",
        "LLMCACHE_BUNDLE_KEY",
        "LLMCACHE_CASSETTE_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMCACHE_DIR", str(tmp_path / "llmcache-dir"))
    llmcache.set_default_cache(None)
    yield
    llmcache.set_default_cache(None)


@pytest.fixture
def memory_cache() -> Iterator[llmcache.Cache]:
    cache = llmcache.Cache(workspace="test", tiers=["memory"])
    yield cache
    cache.close()


@pytest.fixture
def disk_cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    cache = llmcache.Cache(workspace="test", tiers=["memory", f"disk://{tmp_path}/disk"])
    yield cache
    cache.close()
