"""The ``litellm.Cache`` that `llmcache_litellm.cache` returns: LiteLLM's own, telling our
backend which call each read belongs to (for single-flight, see `_flight`).

LiteLLM runs the reads of an async embedding's inputs in tasks of their own; a claim needs
the task that makes the call: this subclass passes it on, and changes nothing else. (A
sync read's call, which a claim needs too, the backend finds itself on a miss: see
`_backend.call_of_read`. A sync hit goes through LiteLLM's own `get_cache` untouched.)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litellm.caching.caching import Cache as LiteLLMCache

from ._backend import OWNER, LLMCacheBackend
from ._flight import Batch

__all__ = ["SingleFlightCache"]


class SingleFlightCache(LiteLLMCache):  # type: ignore[misc]
    """``litellm.Cache`` on an `LLMCacheBackend`."""

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
