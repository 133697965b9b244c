"""llmcache's public extension API: what provider adapters, framework integrations and
backends are built from, and all they may import from llmcache.

Our own adapters (``adapters/llmcache_openai``, ``llmcache_redis``, ``llmcache_upstash``) import
nothing else from llmcache (``tests/test_ext_api.py`` checks their imports), so a third-party
adapter can do everything ours do. The README's "Writing a provider adapter" and "Writing a
backend" walk through both.

A **provider adapter** wraps an SDK client. For each cached endpoint it asks the cache for a
`CallSite` (``cache.site("vendor.endpoint", returns=ResponseType, provider="vendor")``), turns a
call's arguments into plain request data, and calls ``site.call(request, compute)`` (or
``acall``): a hit returns the stored result, a miss runs ``compute`` once (single-flight) and
stores its result. ``site.get`` / ``site.put`` serve adapters that deliver results
themselves (streams). The adapter reports what a result used and cost as a `Usage` from its
``usage_of``; it is registered under the ``llmcache.providers`` entry point group (or with
`register_provider`), and `Cache.wrap` finds it by ``can_wrap``.

A **backend** subclasses `Backend` and registers its class under the ``llmcache.backends``
entry point group (or with `register_backend`) by URL scheme. A backend for a store that
speaks Redis can hold rate limits' windows with the Lua scripts of `window_scripts`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from . import _window_scripts as window_scripts
from ._backend import Backend, run_in_thread
from ._cache import Cache
from ._errors import (
    BackendError,
    CallRefused,
    ConfigError,
    KeyDerivationError,
    LLMCacheError,
    MissingDependencyError,
)
from ._fresh import fresh_copy
from ._hot import KeyToken
from ._loops import PerLoop
from ._options import Options, current_options
from ._registry import register_backend, register_provider
from ._site import MISS, CallSite
from ._usage import Usage

__all__ = [
    "MISS",
    "Backend",
    "BackendError",
    "Cache",
    "CallRefused",
    "CallSite",
    "ConfigError",
    "KeyDerivationError",
    "KeyToken",
    "LLMCacheError",
    "MissingDependencyError",
    "Options",
    "PerLoop",
    "Provider",
    "Usage",
    "current_options",
    "extension_state",
    "fresh_copy",
    "register_backend",
    "register_provider",
    "run_in_thread",
    "window_scripts",
]

_T = TypeVar("_T")
_STATE_LOCK = threading.Lock()


class Provider(Protocol):
    """A provider adapter, as `Cache.wrap` and the ledger use it.

    ``usage_of`` is optional: without it, the provider's results are counted unpriced unless
    the site was given a ``usage=`` hook.
    """

    name: str

    def can_wrap(self, client: Any) -> bool:
        """Whether `wrap` knows this client."""
        ...

    def wrap(self, cache: Cache, client: Any, **options: Any) -> Any:
        """A caching view of `client`, with the same methods and types."""
        ...

    def usage_of(self, result: Any) -> Usage | None:
        """What the real call that returned `result` used, or None if it is not ours."""
        ...


def extension_state(cache: Cache, name: str, make: Callable[[], _T]) -> _T:
    """The state an extension keeps for one cache, made by `make()` on first use.

    An adapter keeps its per-cache objects here (e.g. its call sites) rather than on the
    cache itself or in a map keyed by cache; it lives and dies with the cache. `name` is
    the extension's own (its package name), so extensions never share state by accident.
    """
    state = cache._extension_state  # this module is the one way in to it
    found = state.get(name)
    if found is None:
        # Made outside the lock (`make` may be slow, or ask for other state); if two threads
        # make it at once, the first one stored wins and both get that one.
        made = make()
        with _STATE_LOCK:
            found = state.setdefault(name, made)
    return found  # type: ignore[no-any-return]
