"""llmcache as DSPy's cache: ``dspy.cache = llmcache_dspy.DSPyCache(cache)``.

import dspy
import llmcache
import llmcache_dspy

dspy.cache = llmcache_dspy.DSPyCache(llmcache.Cache(workspace="acme"))
dspy.configure(lm=dspy.LM("openai/gpt-4o-mini"))
dspy.Predict("question -> answer")(question="Why cache?")  # a second run makes no request

Every LM call DSPy caches (``dspy.LM``'s native and LiteLLM engines, sync and async,
``dspy.Embedder``, any ``@dspy.clients.cache.request_cache`` function) is then stored in
llmcache's tiers, signed and encrypted for the cache's workspace, as JSON (never pickle),
single-flight across threads, and counted in the cache's stats and savings report.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dspy.clients.cache import Cache as _DSPyCacheBase  # type: ignore[import-untyped]

from llmcache.ext import MISS, Cache, CallRefused, CallSite, extension_state

from ._values import MARK, decode, encode, usage_of

__all__ = ["IGNORED_BY_DEFAULT", "SITE", "DSPyCache"]

log = logging.getLogger("llmcache")

SITE = "dspy.cache"
# What DSPy leaves out of every key (``request_cache``'s default and ``dspy.LM``'s list):
# where a request is sent and with which credential do not change its answer.
IGNORED_BY_DEFAULT = ("api_key", "api_base", "base_url")
# Misses whose `put` has not come yet, remembered for the time the call took; bounded so
# that calls that failed (and so never `put`) cannot grow it.
_PENDING_LIMIT = 4096


def _transform(value: Any) -> Any:
    """A request value as DSPy keys it (``dspy.clients.cache._transform_value``)."""
    # pydantic is loaded: DSPy imports it.
    import pydantic

    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return value.model_json_schema()
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if callable(value):
        try:
            return f"<callable_source:{inspect.getsource(value)}>"
        except (TypeError, OSError):
            return f"<callable:{getattr(value, '__name__', 'lambda')}>"
    if isinstance(value, dict):
        return {k: _transform(v) for k, v in value.items()}
    return value


# The types DSPy's requests hold that are keyed as they are; anything else goes through
# `_transform`, as DSPy's own `cache_key` does.
_PLAIN = (str, int, float, bool, type(None), list)


def _hit(value: Any) -> Any:
    """Mark a hit the way DSPy's own cache does: no usage, ``cache_hit`` set."""
    if hasattr(value, "usage") and not isinstance(value, dict):
        value.usage = {}
        object.__setattr__(value, "cache_hit", True)
    return value


class _Thread(threading.local):
    held: list[tuple[str, Callable[[], None]]]

    def __init__(self) -> None:
        self.held = []


class DSPyCache(_DSPyCacheBase):  # type: ignore[misc]
    """DSPy's cache (``dspy.clients.Cache``), kept by an llmcache `Cache`.

    Args:
        cache: the llmcache cache (its workspace, secret, tiers, TTL and ledger).
        namespace: the namespace of DSPy's entries (``cache.invalidate(namespace=...)``
            clears them); default the cache's own.
        ttl: how long an entry lives, in seconds; default the cache's.
        single_flight: identical concurrent calls (threads, e.g. ``dspy.Parallel`` or
            ``Evaluate(num_threads=...)``) make one request; the others wait for its
            answer, at most the cache's ``lock_wait``.

    DSPy's own arguments keep DSPy's meaning: ``get(request, ignored_args_for_cache_key)``
    keys the request less those arguments (``api_key``, ``api_base``, ``base_url`` by
    default, as DSPy does), ``rollout_id`` and everything else included.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        single_flight: bool = True,
    ) -> None:
        if not isinstance(cache, Cache):
            raise TypeError(
                f"DSPyCache takes an llmcache.Cache, got {type(cache).__name__}: "
                "use DSPyCache(llmcache.Cache(workspace=...))"
            )
        # DSPy's attributes, for code that reads them; no tier of DSPy's own is made.
        self.enable_memory_cache = True
        self.enable_disk_cache = False
        self.disk_cache_dir = None
        self.memory_cache: dict[str, Any] = {}
        self.disk_cache: dict[str, Any] = {}
        self._lock = threading.RLock()
        self.cache = cache
        self.single_flight = single_flight
        made: dict[tuple[str | None, float | None], CallSite] = extension_state(
            cache, "llmcache_dspy", dict
        )
        site = made.get((namespace, ttl))
        if site is None:
            site = made.setdefault((namespace, ttl), cache.site(SITE, namespace=namespace, ttl=ttl))
        self.site = site
        self._pending: dict[str, float] = {}
        self._thread = _Thread()

    # -- keys --------------------------------------------------------------------------------
    @staticmethod
    def _params(
        request: Mapping[str, Any], ignored: list[str] | tuple[str, ...] | None
    ) -> dict[str, Any]:
        ignored = IGNORED_BY_DEFAULT if ignored is None else ignored
        return {
            k: v if type(v) in _PLAIN else _transform(v)
            for k, v in request.items()
            if k not in ignored
        }

    def cache_key(
        self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None
    ) -> str:
        """The signed key of `request` in this cache's workspace (less the ignored args)."""
        return self.site.key(self._params(request, ignored_args_for_cache_key))

    def __contains__(self, key: object) -> bool:
        # DSPy's own keys are sha256 hexdigests; ours are signed and not looked up by key
        # alone. Nothing is reported as present: ask with `get(request)`.
        return False

    # -- DSPy's protocol -----------------------------------------------------------------------
    def get(
        self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None
    ) -> Any:
        """The cached value for `request`, or None (DSPy's miss). Raises only what the
        user's own limits refuse (`CallRefused`: replay mode, a spent budget, a rate limit),
        which DSPy passes to the caller; nothing else."""
        held = self._thread.held
        if held:
            # This thread is asking again: the call it led ended without a `put` (it
            # failed), so the identical calls waiting for it stop waiting.
            self._release_held(held)
        try:
            params = self._params(request, ignored_args_for_cache_key)
            found = self.site.get(params)
            if found is MISS:
                found = self._miss(params)
        except CallRefused:  # replay mode, a spent budget, a rate limit: the caller's limits
            raise
        except Exception as exc:  # a request we cannot key, or a bug: never DSPy's problem
            log.debug("llmcache_dspy: uncached request (%s: %s)", type(exc).__name__, exc)
            return None
        if found is MISS:
            return None
        if type(found) is dict and MARK not in found:
            return found  # the native engine's record: plain data, a fresh copy
        try:
            value = decode(found)
        except Exception as exc:  # e.g. a LiteLLM that no longer reads its old responses
            log.debug("llmcache_dspy: unreadable entry (%s: %s)", type(exc).__name__, exc)
            return None  # a miss: DSPy calls the provider and stores a new entry
        if value is not found:
            self.site.share_info(found, value)
        return _hit(value)

    def _miss(self, params: dict[str, Any]) -> Any:
        """A miss: lead this request's call (single-flight), or the value another stored."""
        key = self.site.key(params)
        if self.single_flight and not threading.current_thread().name.startswith("asyncio"):
            found, release = self.site.claim(params)
            if found is not MISS:
                return found
            self._thread.held.append((key, release))
        pending = self._pending
        if len(pending) >= _PENDING_LIMIT:
            pending.clear()
        pending[key] = time.monotonic()
        return MISS

    def _release_held(self, held: list[tuple[str, Callable[[], None]]]) -> None:
        while held:
            _, release = held.pop()
            try:
                release()
            except Exception:  # pragma: no cover - release never raises; never fail a call
                log.debug("llmcache_dspy: release failed", exc_info=True)

    def put(
        self,
        request: dict[str, Any],
        value: Any,
        ignored_args_for_cache_key: list[str] | None = None,
        enable_memory_cache: bool = True,
    ) -> None:
        """Store a real call's `value` and count it (model, cost, time) in the ledger.

        Never raises. ``enable_memory_cache`` is accepted for DSPy's signature; llmcache's
        memory tier is bounded on its own, so every value is kept there too.
        """
        key = None
        try:
            params = self._params(request, ignored_args_for_cache_key)
            key = self.site.key(params)
            started = self._pending.pop(key, None)
            latency = 0.0 if started is None else time.monotonic() - started
            usage = usage_of(value, params.get("model"))
            self.site.put(params, encode(value), latency_s=latency, usage=usage)
        except Exception as exc:
            log.debug("llmcache_dspy: not stored (%s: %s)", type(exc).__name__, exc)
        finally:
            held = self._thread.held
            if held and key is not None:
                for index, (claimed, release) in enumerate(held):
                    if claimed == key:
                        del held[index]
                        release()
                        break

    # -- DSPy's maintenance calls ------------------------------------------------------------
    def reset_memory_cache(self) -> None:
        """DSPy's "forget what this process remembers", kept to its meaning.

        With a memory-only cache this clears DSPy's entries (they are all this process
        has). With a disk or Redis tier it does nothing: like DSPy's own disk cache, the
        entries there stay (they were paid for); ``clear()`` removes them on purpose.
        """
        if not self.site.stores_below_memory:
            self.site.clear()

    def clear(self) -> None:
        """Make DSPy's entries unreachable in this workspace, in every tier and process."""
        self.site.clear()

    def save_memory_cache(self, filepath: str) -> None:
        raise NotImplementedError(
            "DSPyCache keeps entries in llmcache's tiers, not a pickle file: share them with a "
            "disk folder or Redis tier (llmcache.Cache(tiers=[...])) instead of save_memory_cache"
        )

    def load_memory_cache(self, filepath: str, allow_pickle: bool = False) -> None:
        raise NotImplementedError(
            "DSPyCache never loads pickle files: point llmcache.Cache(tiers=[...]) at the disk "
            "folder or Redis server that holds the entries instead of load_memory_cache"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> DSPyCache:
        return self  # one cache, shared, as `dspy.cache` is

    def __copy__(self) -> DSPyCache:
        return self

    def __repr__(self) -> str:
        return f"<llmcache_dspy.DSPyCache {self.site!r}>"
