"""Tier URLs and providers when an adapter's client library is missing, and run-time
registration: what a user with a partial install, or a third-party backend, meets.

A missing library is simulated the way Python itself reports one: ``sys.modules[name] = None``
makes ``import name`` raise ``ModuleNotFoundError``. The adapters' modules are imported afresh
for the test and the originals are put back after, so other tests keep theirs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import llmcache
from llmcache import _registry
from llmcache.ext import Backend, MissingDependencyError

SECRET = "s" * 32


@pytest.fixture
def fresh_imports() -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch under which the adapters import afresh; every module they (re)load is
    dropped after, and the originals come back."""
    before = dict(sys.modules)
    patch = pytest.MonkeyPatch()
    for name in list(sys.modules):
        if name.partition(".")[0] in ("llmcache_redis", "llmcache_upstash", "llmcache_openai"):
            patch.delitem(sys.modules, name)
    patch.setattr(_registry, "_INSTALLED_PROVIDERS", None)
    try:
        yield patch
    finally:
        patch.undo()
        for name in set(sys.modules) - set(before):
            del sys.modules[name]
        sys.modules.update(before)


def hide(patch: pytest.MonkeyPatch, module: str) -> None:
    patch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(
    ("package", "library", "extra"),
    [
        ("llmcache_redis", "redis", "redis"),
        ("llmcache_redis", "hiredis", "redis"),
        ("llmcache_upstash", "upstash_redis", "upstash"),
        ("llmcache_upstash", "httpx", "upstash"),
    ],
)
def test_an_adapter_without_its_library_says_what_to_install(
    fresh_imports: pytest.MonkeyPatch, package: str, library: str, extra: str
) -> None:
    hide(fresh_imports, library)
    if library == "hiredis":  # redis-py imports hiredis only if present: hide redis-py's use
        hide(fresh_imports, "redis")
    with pytest.raises(MissingDependencyError, match=rf"pip install 'llmcache\[{extra}\]'"):
        importlib.import_module(package)


@pytest.mark.parametrize(
    ("package", "broken"),
    [
        ("llmcache_redis", "llmcache_redis._cluster"),
        ("llmcache_upstash", "llmcache_upstash._backend"),
    ],
)
def test_an_adapter_broken_otherwise_is_not_called_a_missing_extra(
    fresh_imports: pytest.MonkeyPatch, package: str, broken: str
) -> None:
    hide(fresh_imports, broken)  # an ImportError of the adapter's own, not of a library
    with pytest.raises(ImportError) as raised:
        importlib.import_module(package)
    assert not isinstance(raised.value, MissingDependencyError)
    assert raised.value.name == broken


def test_a_tier_url_whose_library_is_missing_names_the_extra(
    fresh_imports: pytest.MonkeyPatch,
) -> None:
    hide(fresh_imports, "redis")
    with pytest.raises(MissingDependencyError) as raised:
        llmcache.Cache(workspace="w", secret=SECRET, tiers=["memory", "redis://127.0.0.1:1/0"])
    # The adapter's own message, passed on unchanged (not wrapped a second time).
    assert "the redis:// tiers need redis-py" in str(raised.value)


def test_a_tier_url_whose_adapter_fails_to_import_names_the_extra(
    fresh_imports: pytest.MonkeyPatch,
) -> None:
    hide(fresh_imports, "llmcache_upstash._backend")
    with pytest.raises(MissingDependencyError) as raised:
        llmcache.Cache(workspace="w", secret=SECRET, tiers=["memory", "upstash://t@127.0.0.1"])
    message = str(raised.value)
    assert "the upstash:// tier needs a package that is not installed" in message
    assert "pip install 'llmcache[upstash]'" in message


def test_providers_whose_library_is_missing_are_left_out(
    fresh_imports: pytest.MonkeyPatch,
) -> None:
    hide(fresh_imports, "openai")
    names = [getattr(provider, "name", None) for provider in _registry.load_providers()]
    assert "openai" not in names


def test_the_installed_providers_include_openai() -> None:
    names = [getattr(provider, "name", None) for provider in _registry.load_providers()]
    assert "openai" in names


@pytest.mark.parametrize("url", ["", "   ", None, 42])
def test_a_tier_that_is_not_a_url_string(url: Any) -> None:
    with pytest.raises(llmcache.ConfigError, match="a tier must be a URL string"):
        _registry.backend_from_url(url)


@pytest.mark.parametrize("not_a_backend", [object, dict, "memory", None])
def test_register_backend_takes_only_backend_classes(not_a_backend: Any) -> None:
    with pytest.raises(TypeError, match="expects a Backend subclass"):
        llmcache.register_backend("odd", not_a_backend)
    assert "odd" not in _registry.known_schemes()


class Shelf(Backend):
    """A minimal third-party tier: a dict per URL (persistent: a cache whose only tier is a
    non-persistent one other than memory fails on close, see the coverage report)."""

    shelves: dict[str, dict[str, bytes]] = {}  # noqa: RUF012 - shared on purpose

    def __init__(self, url: str) -> None:
        self.name = url
        self.items = self.shelves.setdefault(url, {})
        self.counters: dict[str, dict[str, float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Shelf:
        return cls(url)

    def get(self, key: str) -> bytes | None:
        return self.items.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.items if key.startswith(prefix)]
        for key in doomed:
            del self.items[key]
        return len(doomed)

    def incr_counters(self, key: str, deltas: Any) -> None:
        self.counters.setdefault(key, {})
        for field, delta in deltas.items():
            self.counters[key][field] = self.counters[key].get(field, 0.0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self.counters.get(key, {}))

    def close(self) -> None:
        pass


def test_a_registered_backend_serves_its_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_REGISTERED", {})
    llmcache.register_backend("shelf", Shelf)
    assert "shelf" in _registry.known_schemes()
    with llmcache.Cache(workspace="w", tiers=["shelf://one"]) as cache:
        calls: list[str] = []

        @cache.cached
        def ask(q: str) -> str:
            calls.append(q)
            return q.upper()

        assert ask("a") == ask("a") == "A"
        assert calls == ["a"]
        assert [tier.name for tier in cache._tiers] == ["shelf://one"]
    assert Shelf.shelves["shelf://one"]  # the entry went to the registered tier
