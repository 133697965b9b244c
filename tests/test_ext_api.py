"""The public extension API (`llmcache.ext`): our adapters use it alone, and it is enough."""

from __future__ import annotations

import ast
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import ext

ROOT = Path(__file__).resolve().parent.parent
ADAPTER_FILES = sorted((ROOT / "adapters").glob("*/*.py"))
# The demo is an application of llmcache (it wraps an OpenAI client as a user would), not
# part of the cache: it may import the OpenAI SDK.
CORE_FILES = sorted(p for p in (ROOT / "llmcache").glob("*.py") if p.name != "_demo.py")


def _llmcache_imports(path: Path) -> list[str]:
    """Every module of the `llmcache` package that `path` imports (not our adapters')."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n == "llmcache" or n.startswith("llmcache.")]
    return found


def test_the_adapter_files_are_found() -> None:
    packages = {path.parent.name for path in ADAPTER_FILES}
    assert {"llmcache_openai", "llmcache_redis", "llmcache_upstash"} <= packages


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_adapters_import_only_the_extension_api(path: Path) -> None:
    imported = _llmcache_imports(path)
    assert all(name == "llmcache.ext" for name in imported), (
        f"{path.relative_to(ROOT)} imports {imported}: adapters may import only llmcache.ext"
    )


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_adapters_keep_no_state_in_another_objects_dict(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    touched = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "__dict__"
    ]
    assert touched == [], f"{path.relative_to(ROOT)} uses __dict__ at lines {touched}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import llmcache\nfrom llmcache._site import CallSite\nimport llmcache_x\n")
    assert _llmcache_imports(bad) == ["llmcache", "llmcache._site"]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_the_core_imports_no_adapter_and_knows_no_provider_field(path: Path) -> None:
    source = path.read_text()
    for adapter in ("llmcache_openai", "llmcache_redis", "llmcache_upstash", "openai", "redis"):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] != adapter, (path.name, node.module)
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != adapter for a in node.names), path.name
    # OpenAI's usage field names live in the OpenAI adapter (llmcache_openai/_usage.py).
    for field in ("prompt_tokens", "completion_tokens", "input_tokens_details"):
        assert field not in source, f"{path.name} knows OpenAI's field {field!r}"


def test_every_public_name_exists_and_is_documented() -> None:
    for name in ext.__all__:
        value = getattr(ext, name)
        if callable(value) and not isinstance(value, type | str):
            assert value.__doc__, f"llmcache.ext.{name} has no docstring"
    assert repr(ext.MISS) == "llmcache.MISS"


class _Answer:
    """A third-party SDK's response: text and a usage record of its own shape."""

    def __init__(self, text: str, tokens_in: int, tokens_out: int) -> None:
        self.text = text
        self.usage = {"in": tokens_in, "out": tokens_out}


class _Client:
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, prompt: str) -> str:
        self.calls += 1
        return f"answer to {prompt}"


class _Wrapped:
    """What a minimal provider adapter hands back: the client's method, cached."""

    def __init__(self, cache: ext.Cache, client: _Client) -> None:
        self._client = client
        self._site = ext.extension_state(cache, "test_vendor", lambda: _site_for(cache))

    def complete(self, prompt: str) -> str:
        request = {"prompt": prompt}
        result: str = self._site.call(request, lambda: self._client.complete(prompt))
        return result


def _site_for(cache: ext.Cache) -> ext.CallSite:
    return cache.site("vendor.complete", returns=str, provider="vendor")


class _VendorProvider:
    """A third-party provider built from `llmcache.ext` alone."""

    name = "vendor"

    @staticmethod
    def can_wrap(client: Any) -> bool:
        return isinstance(client, _Client)

    @staticmethod
    def wrap(cache: ext.Cache, client: Any, **options: Any) -> Any:
        return _Wrapped(cache, client)

    @staticmethod
    def usage_of(result: Any) -> ext.Usage | None:
        if not isinstance(result, _Answer):
            return None
        return ext.Usage(
            model="vendor-1",
            provider="vendor",
            input_tokens=result.usage["in"],
            output_tokens=result.usage["out"],
            cost_usd=0.5,
        )


@pytest.fixture
def vendor() -> Any:
    provider = _VendorProvider()
    ext.register_provider(provider)
    yield provider
    from llmcache import _registry

    _registry._REGISTERED_PROVIDERS.remove(provider)


def test_a_third_party_provider_wraps_caches_and_shares_one_site(vendor: Any) -> None:
    cache = llmcache.Cache(workspace="ext", tiers=["memory"])
    client = _Client()
    first, second = cache.wrap(client), cache.wrap(client)
    assert first.complete("q") == second.complete("q") == "answer to q"
    assert client.calls == 1
    assert first._site is second._site  # the adapter's state lives with the cache
    assert cache.stats().hits == 1


def test_a_providers_usage_of_prices_a_cached_functions_result(vendor: Any) -> None:
    cache = llmcache.Cache(workspace="ext-usage", tiers=["memory"])

    @cache.cached
    def ask(prompt: str) -> _Answer:
        return _Answer(prompt, 100, 20)

    ask("hello")
    cache.flush()
    report = cache.report()
    assert report.totals.spent_usd == pytest.approx(0.5)
    assert report.totals.input_tokens == 100


def test_a_usage_hook_may_return_a_usage_record() -> None:
    cache = llmcache.Cache(workspace="ext-hook", tiers=["memory"])

    @cache.cached(usage=lambda r: ext.Usage(model="m", input_tokens=3, cost_usd=0.25))
    def ask(prompt: str) -> str:
        return prompt

    ask("x")
    cache.flush()
    assert cache.report().totals.spent_usd == pytest.approx(0.25)


def test_extension_state_is_per_cache_per_name_and_dies_with_the_cache() -> None:
    made: list[int] = []

    def make() -> dict[str, int]:
        made.append(1)
        return {}

    cache = llmcache.Cache(workspace="ext-state", tiers=["memory"])
    state = ext.extension_state(cache, "a", make)
    assert ext.extension_state(cache, "a", make) is state
    assert ext.extension_state(cache, "b", dict) is not state
    other = llmcache.Cache(workspace="ext-state", tiers=["memory"])
    assert ext.extension_state(other, "a", make) is not state
    assert len(made) == 2
    gone = weakref.ref(cache)
    del cache, state
    gc.collect()
    assert gone() is None


def test_register_provider_refuses_what_cannot_wrap() -> None:
    with pytest.raises(TypeError, match="can_wrap"):
        ext.register_provider(object())


class _Shelf(ext.Backend):
    """A third-party tier that does not persist (and is not the memory tier)."""

    persistent = False
    name = "shelf://"

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.counters: dict[str, dict[str, float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> _Shelf:
        return cls()

    def get(self, key: str) -> bytes | None:
        return self.items.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        gone = [k for k in self.items if k.startswith(prefix)]
        for key in gone:
            del self.items[key]
        return len(gone)

    def incr_counters(self, key: str, deltas: Any) -> None:
        held = self.counters.setdefault(key, {})
        for field, delta in deltas.items():
            held[field] = held.get(field, 0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self.counters.get(key, {}))

    def close(self) -> None:
        return None


def test_a_cache_on_a_non_persistent_third_party_tier_alone_keeps_its_ledger() -> None:
    shelf = _Shelf()
    cache = llmcache.Cache(workspace="shelf", tiers=[shelf])

    @cache.cached
    def ask(q: str) -> str:
        return q.upper()

    assert ask("a") == ask("a") == "A"
    cache.close()  # flushes the ledger into the shelf (it used to fail an assertion)
    assert shelf.counters  # the counts went to the only tier there is
    assert cache.report().totals.hits == 1
