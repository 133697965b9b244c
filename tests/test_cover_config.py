"""Configuration from LLMCACHE_* and the default cache's way around a cache folder it
cannot use: it runs from memory and says why, instead of crashing the import of the user's
module (a Cache configured explicitly gets the ConfigError)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import llmcache
from llmcache import _config
from llmcache._config import env_settings, get_default_cache, load_or_create_secret


def test_env_settings_reads_every_variable() -> None:
    settings = env_settings(
        {
            "LLMCACHE_WORKSPACE": "acme",
            "LLMCACHE_SECRET": "k" * 32,
            "LLMCACHE_TIERS": " memory , disk ,",
            "LLMCACHE_TTL": "2.5",
            "LLMCACHE_DISABLE": "Yes",
        }
    )
    assert settings == {
        "workspace": "acme",
        "secret": "k" * 32,
        "tiers": ["memory", "disk"],
        "ttl": 2.5,
        "enabled": False,
    }


def test_a_ttl_that_is_not_a_number() -> None:
    with pytest.raises(llmcache.ConfigError, match="LLMCACHE_TTL='soon' is not a number"):
        env_settings({"LLMCACHE_TTL": "soon"})


def test_a_secret_file_that_is_not_hex(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not hex at all")
    with pytest.raises(llmcache.ConfigError, match="does not hold a hex secret; delete it"):
        load_or_create_secret(tmp_path)


def test_a_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "new")
    assert len(first) == 32
    assert load_or_create_secret(tmp_path / "new") == first
    assert oct((tmp_path / "new" / "secret").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["secret"]  # no draft left


def test_two_processes_making_the_secret_at_once_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process links its secret into place between our read and our link: ours is
    dropped and theirs used, so both sign with the same one."""
    theirs = bytes(range(32))
    real_link = os.link

    def other_process_first(source: str | Path, target: str | Path) -> None:
        Path(target).write_text(theirs.hex())
        real_link(source, target)  # FileExistsError, as in the real race

    monkeypatch.setattr(os, "link", other_process_first)
    assert load_or_create_secret(tmp_path) == theirs
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # our draft is gone


def test_the_default_cache_runs_from_memory_when_its_folder_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("LLMCACHE_DIR", str(blocked))
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        cache = get_default_cache()
    try:
        assert [tier.name for tier in cache._tiers] == []
        assert cache.memory is not None
        assert "runs without its disk tier" in caplog.text
        calls: list[int] = []

        @llmcache.cached
        def double(n: int) -> int:
            calls.append(n)
            return 2 * n

        assert double(2) == double(2) == 4
        assert calls == [2]  # still a cache, from memory
    finally:
        llmcache.set_default_cache(None)
        cache.close()


def test_the_default_cache_drops_the_disk_when_its_secret_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "cache"
    (folder / "secret").mkdir(parents=True)  # a folder where the secret file belongs
    monkeypatch.setenv("LLMCACHE_DIR", str(folder))
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        cache = get_default_cache()
    try:
        assert cache._tiers == [] and cache.memory is not None
        assert "cannot read or create the cache's secret file" in caplog.text
    finally:
        llmcache.set_default_cache(None)
        cache.close()


def test_the_default_cache_keeps_a_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cache"
    (folder / "secret").mkdir(parents=True)  # never read: LLMCACHE_SECRET is used instead
    monkeypatch.setenv("LLMCACHE_DIR", str(folder))
    monkeypatch.setenv("LLMCACHE_SECRET", "e" * 32)
    cache = get_default_cache()
    try:
        assert [tier.name for tier in cache._tiers] == [f"disk://{folder}/cache.sqlite3"]
    finally:
        llmcache.set_default_cache(None)
        cache.close()


def test_a_disk_tier_with_a_bad_url_is_still_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_TIERS", "memory,nosuch://x")
    with pytest.raises(llmcache.ConfigError, match="unknown tier scheme"):
        get_default_cache()


def test_a_default_cache_with_no_tier_left_gets_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("LLMCACHE_DIR", str(blocked))
    monkeypatch.setenv("LLMCACHE_TIERS", "disk")
    cache = get_default_cache()
    try:
        assert cache.memory is not None and cache._tiers == []
    finally:
        llmcache.set_default_cache(None)
        cache.close()
    assert _config._DEFAULT is None
