"""User mistakes get a one-line error that says what to do (issue 9, items 17 and 18)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import ConfigError

SECRET = "s" * 32
BAD_SECONDS = ["10", math.nan, math.inf, -math.inf, -1, 0, True, b"10"]


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("ttl", BAD_SECONDS, ids=repr)
def test_cache_ttl_must_be_finite_positive_seconds(ttl: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        llmcache.Cache(secret=SECRET, tiers=["memory"], ttl=ttl)
    assert "ttl" in _one_line(raised.value) and "seconds" in str(raised.value)


@pytest.mark.parametrize("ttl", BAD_SECONDS, ids=repr)
def test_cached_ttl_must_be_finite_positive_seconds(ttl: Any) -> None:
    cache = llmcache.Cache(secret=SECRET, tiers=["memory"])
    with pytest.raises(ConfigError) as raised:
        cache.cached(ttl=ttl)
    assert "ttl" in _one_line(raised.value)


@pytest.mark.parametrize("label", ["ttl", "max_age"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_per_call_ttl_and_max_age_are_checked(label: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        llmcache.options(**{label: value})
    assert label in _one_line(raised.value)


def test_good_seconds_still_work() -> None:
    cache = llmcache.Cache(secret=SECRET, tiers=["memory"], ttl=10)
    calls = []

    @cache.cached(ttl=2.5)
    def fn(x: int) -> int:
        calls.append(x)
        return x

    with llmcache.options(ttl=1, max_age=30.0):
        assert fn(1) == 1 and fn(1) == 1
    assert calls == [1]


@pytest.mark.parametrize("lock_ttl", [0, -1, math.nan, math.inf, "3"], ids=repr)
def test_lock_ttl_must_be_finite_positive(lock_ttl: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        llmcache.Cache(secret=SECRET, tiers=["memory"], lock_ttl=lock_ttl)
    assert "lock_ttl" in _one_line(raised.value)


@pytest.mark.parametrize("kind", ["workspace", "namespace"])
@pytest.mark.parametrize("name", ["research\n", "a\nb", "", " x"], ids=repr)
def test_names_with_newlines_are_refused(kind: str, name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        llmcache.Cache(secret=SECRET, tiers=["memory"], **{kind: name})
    assert kind in _one_line(raised.value)


def test_namespace_names_are_checked_everywhere() -> None:
    cache = llmcache.Cache(secret=SECRET, tiers=["memory"])
    with pytest.raises(ConfigError):
        cache.cached(namespace="ns\n")(lambda: 1)
    with pytest.raises(ConfigError):
        llmcache.options(namespace="ns\n")
    with pytest.raises(ConfigError):
        llmcache.options(namespace="")


def test_invalidate_of_an_empty_namespace_is_refused_and_invalidates_nothing() -> None:
    cache = llmcache.Cache(secret=SECRET, tiers=["memory"])
    calls = []

    @cache.cached
    def fn(x: int) -> int:
        calls.append(x)
        return x

    fn(1)
    with pytest.raises(ConfigError) as raised:
        cache.invalidate(namespace="")
    _one_line(raised.value)
    fn(1)
    assert calls == [1]  # the default namespace is still valid


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?tmeout=0.5",
        "rediss://127.0.0.1:1/0?tmeout=0.5",
        "redis+cluster://127.0.0.1:1?tmeout=0.5",
        "upstash://token@127.0.0.1:1?tmeout=0.5",
        "disk://{tmp}?tmeout=0.5",
        "memory://?max_bites=100",
        "memory?max_bites=100",
        "disk?max_bites=100",
    ],
)
def test_unknown_tier_option_is_a_config_error(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as raised:
        llmcache.Cache(secret=SECRET, tiers=["memory", url] if "memory" not in url else [url])
    message = _one_line(raised.value)
    assert "tmeout" in message or "max_bites" in message


def test_redis_options_suggest_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'timeout'"):
        llmcache.Cache(secret=SECRET, tiers=["memory", "redis://127.0.0.1:1/0?tmeout=0.5"])


def test_redis_py_options_still_pass_through() -> None:
    cache = llmcache.Cache(
        secret=SECRET, tiers=["memory", "redis://127.0.0.1:1/0?client_name=x&timeout=0.05"]
    )
    backend: Any = cache._tiers[0].backend
    assert backend.options.client_url.endswith("?client_name=x")
    cache.close()


@pytest.mark.parametrize("bare", ["memory?max_bytes=2000000", "MEMORY?max_bytes=2000000"])
def test_bare_memory_url_takes_options(bare: str) -> None:
    cache = llmcache.Cache(secret=SECRET, tiers=[bare])
    twin = llmcache.Cache(secret=SECRET, tiers=["memory://?max_bytes=2000000"])
    assert cache.memory is not None and twin.memory is not None
    assert cache.memory.max_bytes == twin.memory.max_bytes == 2_000_000


def test_bare_disk_url_takes_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_DIR", str(tmp_path))
    cache = llmcache.Cache(secret=SECRET, tiers=["memory", "disk?max_bytes=3000000"])
    backend: Any = cache._tiers[0].backend
    assert backend.max_bytes == 3_000_000
    cache.close()


def test_misspelt_option_lists_the_valid_names_and_the_closest() -> None:
    with pytest.raises(TypeError) as raised:
        llmcache.options(refesh=True)  # type: ignore[call-arg]
    message = _one_line(raised.value)
    assert "did you mean 'refresh'" in message
    for name in ("bypass", "refresh", "no_store", "ttl", "max_age", "namespace", "sample"):
        assert name in message


@pytest.mark.parametrize(
    ("given", "error"),
    [({"bypass": "yes"}, ConfigError), ({"sample": 1.5}, ConfigError)],
)
def test_option_values_are_checked(given: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        llmcache.options(**given)
