"""The ``litellm.Cache`` that `llmcache_litellm.cache` returns: LiteLLM's own, telling our
backend which call each read belongs to (for single-flight, see `_flight`).

LiteLLM hands a backend's sync read only the key and the prompt, and runs the reads of an
async embedding's inputs in tasks of their own. A claim needs the call's
``litellm_call_id`` (its failure event names it), whether the call is ``no-store``, and the
task that makes the call: this subclass passes them on, and changes nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from litellm.caching.caching import Cache as LiteLLMCache

from ._backend import OWNER, LLMCacheBackend
from ._flight import Batch

__all__ = ["SingleFlightCache"]

_get_cache = LiteLLMCache.get_cache  # LiteLLM's read, called without a super() lookup


class SingleFlightCache(LiteLLMCache):  # type: ignore[misc]
    """``litellm.Cache`` on an `LLMCacheBackend`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        backend = self.cache
        # Where a sync read leaves its call for the backend (a plain thread-local when the
        # backend is another: nobody reads it then).
        self._calls: Any = (
            backend.claims.thread if isinstance(backend, LLMCacheBackend) else threading.local()
        )

    def get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> Any:
        calls = self._calls
        calls.call = kwargs  # read by the backend on a miss, on this thread
        try:
            return _get_cache(self, dynamic_cache_object, **kwargs)
        finally:
            calls.call = None

    def async_get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> Any:
        # Not a coroutine function: this runs in the caller's task, where the coroutine is
        # made. An embedding makes one per input here, then runs them all at once, each in
        # a task of `asyncio.gather`: they are one `Batch`, whose claims are the caller's.
        backend = self.cache
        if "litellm_call_id" not in kwargs and isinstance(backend, LLMCacheBackend):
            task = None
            with contextlib.suppress(RuntimeError):  # made outside a loop: no batch
                task = asyncio.current_task()
            key = kwargs.get("cache_key")
            if task is not None and isinstance(key, str):
                batches = backend.claims.batches
                batch = batches.get(task)
                if batch is None or batch.started:  # the first input of a new call
                    batch = batches[task] = Batch(task)
                kwargs[OWNER] = (batch, batch.add(key))
        return super().async_get_cache(dynamic_cache_object, **kwargs)
