"""llmcache: a fast, tenant-safe, fail-open cache for LLM calls that shows what it saved.

import llmcache

cache = llmcache.Cache(workspace="acme")          # memory, then disk; no server needed

@cache.cached(namespace="research", ignore=("client",))
def ask(client, question: str, model: str = "gpt-4o-mini") -> str: ...

client = cache.wrap(OpenAI())                      # same methods, cached
cache.report()                                     # money and time saved
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._backend import Backend
from ._cache import Cache
from ._codec import register_type
from ._config import get_default_cache, set_default_cache
from ._decorator import CachedFunction, CacheInfo
from ._errors import (
    BackendError,
    BudgetExceeded,
    CacheMiss,
    CallRefused,
    ConfigError,
    KeyDerivationError,
    LLMCacheError,
    MissingDependencyError,
    RateLimited,
)
from ._generations import Invalidation
from ._info import info, last_info
from ._loops import PerLoop
from ._options import Options, current_options, options
from ._pricing import set_price
from ._registry import register_backend
from ._site import MISS, CallSite
from ._usage import Usage, UsageHook

if TYPE_CHECKING:
    from ._bundle import BundleError
    from ._jupyter import load_ipython_extension
    from ._limits import Limit
    from ._sharing import ExportSummary, ImportSummary, export_bundle, import_bundle
    from ._stats import CacheStats, CallInfo, Health, TierHealth, TierStats

__version__ = "0.1.0"

# Public names whose module is imported only when one is first asked for: the pydantic
# models (building them is most of what `import llmcache` would otherwise cost), and the
# Jupyter extension (argparse), which `%load_ext llmcache` asks for by name; sharing a cache
# (export and import: the bundle format and its cryptography).
_LAZY = {
    "BundleError": "._bundle",
    "ExportSummary": "._sharing",
    "ImportSummary": "._sharing",
    "export_bundle": "._sharing",
    "import_bundle": "._sharing",
    "CacheStats": "._stats",
    "CallInfo": "._stats",
    "Health": "._stats",
    "Limit": "._limits",
    "TierHealth": "._stats",
    "TierStats": "._stats",
    "load_ipython_extension": "._jupyter",
}

__all__ = [
    "MISS",
    "Backend",
    "BackendError",
    "BudgetExceeded",
    "BundleError",
    "Cache",
    "CacheInfo",
    "CacheMiss",
    "CacheStats",
    "CachedFunction",
    "CallInfo",
    "CallRefused",
    "CallSite",
    "ConfigError",
    "ExportSummary",
    "Health",
    "ImportSummary",
    "Invalidation",
    "KeyDerivationError",
    "LLMCacheError",
    "Limit",
    "MissingDependencyError",
    "Options",
    "PerLoop",
    "RateLimited",
    "TierHealth",
    "TierStats",
    "Usage",
    "__version__",
    "cached",
    "current_options",
    "export_bundle",
    "get_default_cache",
    "import_bundle",
    "info",
    "last_info",
    "load_ipython_extension",
    "options",
    "register_backend",
    "register_type",
    "set_default_cache",
    "set_price",
    "wrap",
]


def __dir__() -> list[str]:
    """The public API only (not the typing names this module imports for annotations)."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    """A lazy public name (`_LAZY`): import its module now, and keep it as a global."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups do not come here again
    return value


if TYPE_CHECKING:  # what `cached(namespace=...)` returns; not a name users need
    from ._decorator import CachedDecorator

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C")


# The same overloads as `Cache.cached`: type checkers need each signature spelled out, and
# this one decorates into the default cache.
@overload
def cached(function: Callable[_P, _R]) -> CachedFunction[_P, _R]: ...


@overload
def cached(
    function: None = None,
    *,
    namespace: str | None = None,
    ttl: float | None = None,
    ignore: Iterable[str] = (),
    version: str | int | None = None,
    usage: UsageHook | None = None,
) -> CachedDecorator: ...


def cached(
    function: Callable[_P, _R] | None = None,
    *,
    namespace: str | None = None,
    ttl: float | None = None,
    ignore: Iterable[str] = (),
    version: str | int | None = None,
    usage: UsageHook | None = None,
) -> CachedFunction[_P, _R] | CachedDecorator:
    """Cache a function in the default cache (configured from LLMCACHE_* variables)."""
    decorator = get_default_cache().cached(
        namespace=namespace, ttl=ttl, ignore=ignore, version=version, usage=usage
    )
    return decorator(function) if function is not None else decorator


def wrap(client: _C, **options: Any) -> _C:
    """A caching wrapper of a provider client in the default cache, e.g.
    ``llmcache.wrap(OpenAI())``: `Cache.wrap` of `get_default_cache()`, taken when called
    (inside a test marked ``llmcache``, that test's recordings)."""
    return get_default_cache().wrap(client, **options)
