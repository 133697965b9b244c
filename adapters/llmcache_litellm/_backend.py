"""LiteLLM's cache backend (`litellm.caching.base_cache.BaseCache`) on an llmcache `Cache`.

How LiteLLM 1.110 uses a backend (``litellm/caching/caching.py``, ``caching_handler.py``):

* ``litellm.Cache`` derives the key itself (``get_cache_key``: the model and every OpenAI
  parameter of the call, hashed with SHA-256, prefixed with ``"<namespace>:"`` when a
  namespace is given to ``Cache(namespace=...)`` or per call with ``cache={"namespace": ...}``)
  and hands the backend only that key and a value.
* A value is ``{"timestamp": <time.time()>, "response": ...}``: for a completion the
  response is the ``ModelResponse`` as JSON text; for one input of an async embedding call it
  is a ``CachedEmbedding`` dict (``async_set_cache_pipeline``, one entry per input).
* ``completion`` calls ``get_cache`` on the caller's thread, then the provider, then
  ``set_cache``; ``acompletion`` the ``async_`` pair (the write runs in a task of its own).
  ``cache={"no-cache": True}`` skips the read, ``{"no-store": True}`` the write, and
  ``{"ttl": n}`` arrives as ``set_cache(..., ttl=n)``. ``{"s-maxage": n}`` is applied by
  LiteLLM itself, from the value's ``timestamp``.

Each key becomes the request ``{"key": <LiteLLM's key>}`` of an llmcache call site, so the
entry is signed and encrypted per workspace, stored in every tier, and counted. A LiteLLM
namespace becomes the llmcache namespace of the entry (``cache.invalidate(namespace=...)``
and the report's rows), and a ttl a site of its own (a site stores with one ttl). The
value is stored as one JSON document (UTF-8 bytes; never a pickle), with a completion's
response parsed into it, and handed back as a fresh dict whose response is a dict, which
``litellm.Cache.get_cache_logic`` takes as it is (it parses only a response given as text).

Single-flight: a read that misses claims its key (`_flight.Claims`), so that identical
concurrent calls of this process wait for its write and are served the entry; the write,
a failure event of the call, or its owner's next call or end lets them go on.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
from litellm.caching.base_cache import BaseCache
from litellm.caching.caching import Cache as LiteLLMCache

from llmcache.ext import MISS, Cache, CallSite, ConfigError, KeyToken, Usage, extension_state

from ._flight import Batch, Claims, ensure_registered
from ._templates import Templates
from ._usage import usage_of

__all__ = ["OWNER", "LLMCacheBackend"]

#: The kwarg naming the task whose call a read belongs to, when LiteLLM runs the read in a
#: task of its own (an async embedding reads each input in a task of `asyncio.gather`).
OWNER = "_llmcache_owner"

IDENTITY = "litellm.cache"
#: `litellm.Cache.get_cache`, whose frame holds a sync read's call (`call_of_read`), and how
#: far up the stack it is looked for.
_LITELLM_GET_CACHE = LiteLLMCache.get_cache.__code__
_CALL_FRAMES = 8
#: Key tokens kept for repeated reads (LiteLLM's keys are 64 characters: about 0.5 MB).
_MAX_TOKENS = 4096
# LiteLLM's key: SHA-256 hex, after "<namespace>:" when it has one.
_NAMESPACED = re.compile(r"^(?P<namespace>.+):[0-9a-f]{64}$")
# LiteLLM's provider names that genai-prices calls by another id.
_PRICE_LISTS = {
    "gemini": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "bedrock": "aws",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "xai": "x-ai",
    "azure_ai": "azure",
    "text-completion-openai": "openai",
}
# How many misses we remember the start of (for the time a later hit saves); a miss whose
# write never comes (an error, a no-store call) is forgotten when the map is full.
_MAX_STARTS = 4096


def _expires_at_once(ttl: Any) -> bool:
    """A call's ttl at or below zero: as in LiteLLM's own caches, the entry would expire at
    once, so it is not stored (llmcache takes no such ttl; LiteLLM never counts the call
    either, as with ``no-store``)."""
    number = isinstance(ttl, int | float) and not isinstance(ttl, bool)
    return number and ttl <= 0


def _provider_of(kwargs: Mapping[str, Any]) -> str | None:
    """The genai-prices id of the provider LiteLLM routed the call to, or None."""
    provider = kwargs.get("custom_llm_provider")
    model = kwargs.get("model")
    if not isinstance(provider, str) and isinstance(model, str):
        try:
            import litellm

            provider = litellm.get_llm_provider(model=model)[1]
        except Exception:  # an unknown provider: the call is counted unpriced
            return None
    if not isinstance(provider, str):
        return None
    return _PRICE_LISTS.get(provider, provider)


def _no_store(kwargs: Mapping[str, Any] | None) -> bool:
    """Whether the call says ``cache={"no-store": True}``: LiteLLM will not write it."""
    controls = kwargs.get("cache") if kwargs is not None else None
    return isinstance(controls, Mapping) and controls.get("no-store") is True


def _call_ttl(kwargs: Mapping[str, Any] | None) -> Any:
    """The call's ``cache={"ttl": n}``, which LiteLLM passes to its write: the claim is made
    on the site the write will use, so that the cache's checks entered for the claim (a
    budget, a rate limit) are settled by that write."""
    controls = kwargs.get("cache") if kwargs is not None else None
    return controls.get("ttl") if isinstance(controls, Mapping) else None


def _parsed(value: Any) -> Any:
    """LiteLLM's value with a completion's response text parsed (smaller, and LiteLLM takes
    a parsed response as it is); anything else as LiteLLM gave it."""
    if isinstance(value, Mapping):
        response = value.get("response")
        if isinstance(response, str | bytes):
            try:
                return {**value, "response": orjson.loads(response)}
            except orjson.JSONDecodeError:
                pass  # not JSON text: kept as the text it is
        return dict(value)
    return value


def _stored_form(value: Any) -> Any:
    """The entry's value: the JSON document of LiteLLM's value, as UTF-8 bytes.

    Bytes are immutable, so a memory hit hands out the stored object itself, and
    `get_cache` hands LiteLLM a fresh copy of the entry parsed once (see _templates). A
    value that is not JSON data is passed on as it is (llmcache then counts it as
    unstorable and stores nothing).
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return value


def call_of_read() -> dict[str, Any] | None:
    """The keyword arguments of the LiteLLM call whose sync read (a miss) is running here.

    LiteLLM hands a backend's sync read only the key and the prompt, but a claim needs the
    call's ``litellm_call_id`` (its failure event names it), its ``ttl`` and whether it is
    ``no-store``. They are the ``kwargs`` of ``litellm.Cache.get_cache``, a few frames up
    this thread's stack: found there by that function's code object, and read only on a
    miss. (Wrapping ``get_cache`` to hand them down instead cost every hit about 9 µs inside
    ``litellm.completion``: one more Python frame repacking some fifty keyword arguments.)
    None when this read is not inside one (the backend called directly).
    """
    frame = sys._getframe(1)
    for _ in range(_CALL_FRAMES):
        if frame is None:
            return None
        if frame.f_code is _LITELLM_GET_CACHE:
            call = frame.f_locals.get("kwargs")
            return call if isinstance(call, dict) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


class LLMCacheBackend(BaseCache):
    """A LiteLLM cache backend that stores in an llmcache `Cache`.

    Made by `llmcache_litellm.cache(...)`; usable on its own as
    ``litellm.Cache(type="local")``'s ``.cache``.
    """

    def __init__(
        self, cache: Cache, *, namespace: str | None = None, ttl: float | None = None
    ) -> None:
        super().__init__()
        self.llmcache = cache
        self.namespace = namespace
        self.ttl = ttl
        self._sites: dict[tuple[str | None, float | None], CallSite] = extension_state(
            cache, "llmcache_litellm", dict
        )
        self._lock = threading.Lock()
        self._starts: dict[str, float] = {}
        self._default = self._site(namespace, ttl)
        # LiteLLM key -> its key token on the default site (see `_read`); bounded.
        self._tokens: dict[str, KeyToken] = {}
        # Parsed entries: a hit is a fresh copy of one (see _templates).
        templates = self.templates = Templates()
        self._templates_get = templates.by_entry.get
        self._copy = templates.copy
        self._first_parse = templates.first_parse
        # Single-flight: the calls this process leads, claimed at their read (see _flight).
        self.claims = Claims()

    # -- sites and requests ----------------------------------------------------------------
    def _site(self, namespace: str | None, ttl: float | None) -> CallSite:
        found = self._sites.get((namespace, ttl))
        if found is None:
            with self._lock:
                found = self._sites.get((namespace, ttl))
                if found is None:
                    found = self._sites[(namespace, ttl)] = self.llmcache.site(
                        IDENTITY, namespace=namespace, ttl=ttl
                    )
        return found

    def _site_for(self, key: str, ttl: Any = None) -> CallSite:
        """The site of `key` (its LiteLLM namespace) and of a write's `ttl`."""
        if ttl is None and ":" not in key:
            return self._default  # the usual read: no namespace, no ttl of its own
        match = _NAMESPACED.match(key)
        namespace = self.namespace if match is None else match["namespace"]
        if ttl is not None:
            # LiteLLM passes a call's ttl as given: a number of seconds (one at or below 0
            # never gets here: see `_expires_at_once`) or something else, which gets the
            # default rather than an error in the middle of the call.
            number = isinstance(ttl, int | float) and not isinstance(ttl, bool)
            ttl = float(ttl) if number and math.isfinite(ttl) else None
        ttl = self.ttl if ttl is None else ttl
        if namespace == self.namespace and ttl == self.ttl:
            return self._default
        try:
            return self._site(namespace, ttl)
        except ConfigError:
            # A namespace llmcache does not take (say, with a space) or a ttl it refuses: the
            # entry goes to this backend's site, under the whole key, which still keeps it
            # apart from every other namespace's entries.
            return self._default

    def _started(self, key: str) -> None:
        starts = self._starts
        if len(starts) >= _MAX_STARTS:
            starts.clear()
        starts[key] = time.perf_counter()

    def _latency(self, key: str) -> float:
        started = self._starts.pop(key, None)
        return 0.0 if started is None else max(0.0, time.perf_counter() - started)

    @staticmethod
    def _usage(value: Any, kwargs: Mapping[str, Any]) -> Usage | None:
        if not isinstance(value, Mapping):
            return None
        return usage_of(value.get("response"), _provider_of(kwargs))

    # -- reads -----------------------------------------------------------------------------
    def get_cache(self, key: str, **kwargs: Any) -> Any:
        token = self._tokens.get(key)  # a key read before: no keying again (see `_read`)
        found = self._read(key) if token is None else self._default.get_by(token, {"key": key})
        claims = self.claims
        if claims.by_key:  # some call is being led: is one of them this thread's, now over?
            claims.next_call_of_thread(key)
        if type(found) is bytes:  # `_served`, inlined: every hit's
            template = self._templates_get(found)
            return self._copy(template) if template is not None else self._first_parse(found)
        if found is MISS:
            return self._lead(key)
        return found

    def _served(self, found: Any) -> Any:
        """LiteLLM's value from an entry: a fresh dict for every hit."""
        if type(found) is bytes:
            template = self._templates_get(found)
            return self._copy(template) if template is not None else self._first_parse(found)
        return found

    def _read(self, key: str) -> Any:
        """A read of a key without a kept token: its token is made and kept when it can be
        (see `_token_for`), else the key is read in full."""
        token = self._token_for(key)
        if token is None:
            return self._site_for(key).get({"key": key})
        return self._default.get_by(token, {"key": key})

    def _token_for(self, key: str) -> KeyToken | None:
        """A new key token for `key` on the default site, kept for the next read of the
        same key (LiteLLM keys a repeated call with the same 64-character key: a dict lookup
        then finds it, instead of keying the request again). None for a key of another
        namespace, or one the hit path does not key (under options, say)."""
        if self._site_for(key) is not self._default:
            return None
        token = self._default.token({"key": key})
        if token is not None:
            tokens = self._tokens
            with self._lock:  # every write: the eviction below iterates the dict
                while len(tokens) >= _MAX_TOKENS:  # the oldest go first
                    tokens.pop(next(iter(tokens)), None)
                tokens[key] = token
        return token

    def _lead(self, key: str) -> Any:
        """A read that missed: lead the call, or serve what an identical one stores."""
        self._started(key)
        call = call_of_read()  # the LiteLLM call of this read
        if _no_store(call):
            return None  # nothing will be written: nobody should wait for it
        ensure_registered()
        call_id = call.get("litellm_call_id") if call is not None else None
        found = self.claims.lead(
            self._site_for(key, _call_ttl(call)), key, call_id if isinstance(call_id, str) else None
        )
        return None if found is MISS else self._served(found)

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        batched: tuple[Batch, tuple[str, int]] | None = kwargs.get(OWNER)
        if batched is not None:
            return await self._batched_read(key, batched)
        token = self._tokens.get(key) or self._token_for(key)
        if token is None:
            found = await self._site_for(key).aget({"key": key})
        else:
            found = await self._default.aget_by(token, {"key": key})
        claims = self.claims
        if claims.by_key and "litellm_call_id" in kwargs:
            # A new call (not one more input of an embedding): the task's earlier ones are over.
            task = asyncio.current_task()
            if task is not None:
                claims.next_call_of_task(task, key)
        if found is not MISS:
            return self._served(found)
        self._started(key)
        task = asyncio.current_task()
        if _no_store(kwargs) or task is None:  # LiteLLM awaits its reads in a task
            return None
        site = self._site_for(key, _call_ttl(kwargs))
        return await self._alead(site, key, kwargs.get("litellm_call_id"), task)

    async def _batched_read(self, key: str, batched: tuple[Batch, tuple[str, int]]) -> Any:
        """One input's read of an async embedding call (see `Batch`)."""
        batch, entry = batched
        batch.start()
        try:  # done however the read ends (cancelled too): the next inputs take their turn
            found = await self._site_for(key).aget({"key": key})
            if found is not MISS:
                return self._served(found)
            self._started(key)
            await batch.turn(entry)
            return await self._alead(self._site_for(key), key, None, batch.task)
        finally:
            batch.done(entry)

    async def _alead(self, site: CallSite, key: str, call_id: Any, task: asyncio.Task[Any]) -> Any:
        """`_lead` for a task: waiting never blocks the loop."""
        ensure_registered()
        found = await self.claims.alead(
            site, key, call_id if isinstance(call_id, str) else None, task
        )
        return None if found is MISS else self._served(found)

    def batch_get_cache(self, keys: list[str], **kwargs: Any) -> list[Any]:
        return [self.get_cache(key) for key in keys]

    async def async_batch_get_cache(self, keys: list[str], **kwargs: Any) -> list[Any]:
        return [await self.async_get_cache(key) for key in keys]

    # -- writes ----------------------------------------------------------------------------
    # A write takes its key's claims first (so that no event or backstop ends them while the
    # entry is stored), and releases them once it is: their waiters then read the entry.
    def set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        claims = self.claims.take_key(key)
        try:
            self._set(key, value, kwargs)
        finally:
            if claims:
                self.claims.release(claims)

    def _set(self, key: str, value: Any, kwargs: dict[str, Any]) -> None:
        if _expires_at_once(kwargs.get("ttl")):
            return
        parsed = _parsed(value)
        self._site_for(key, kwargs.get("ttl")).put(
            {"key": key},
            _stored_form(parsed),
            latency_s=self._latency(key),
            usage=self._usage(parsed, kwargs),
        )

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        claims = self.claims.take_key(key)
        try:
            await self._aset(key, value, kwargs)
        finally:
            if claims:
                self.claims.release(claims)

    async def _aset(self, key: str, value: Any, kwargs: dict[str, Any]) -> None:
        if _expires_at_once(kwargs.get("ttl")):
            return
        parsed = _parsed(value)
        await self._site_for(key, kwargs.get("ttl")).aput(
            {"key": key},
            _stored_form(parsed),
            latency_s=self._latency(key),
            usage=self._usage(parsed, kwargs),
        )

    async def async_set_cache_pipeline(self, cache_list: Any, **kwargs: Any) -> None:
        # Every key is taken before the first write awaits: a backstop that runs meanwhile
        # must not end the claims of the inputs written next.
        entries = list(cache_list)
        taken = [self.claims.take_key(key) for key, _ in entries]
        try:
            for index, (key, value) in enumerate(entries):
                await self._aset(key, value, kwargs)
                claims, taken[index] = taken[index], []
                if claims:
                    self.claims.release(claims)
        finally:
            for claims in taken:
                if claims:
                    self.claims.release(claims)

    async def batch_cache_write(self, key: str, value: Any, **kwargs: Any) -> None:
        await self.async_set_cache(key, value, **kwargs)

    # -- maintenance -----------------------------------------------------------------------
    def delete_cache(self, key: str) -> None:
        site = self._site_for(key)
        self.llmcache.delete(site.key({"key": key}))

    async def async_delete_cache(self, key: str) -> None:
        self.delete_cache(key)

    def flush_cache(self) -> None:
        """Make this cache's LiteLLM entries unreachable, in every process: those of every
        namespace this process has used (`Cache.invalidate` reaches any namespace)."""
        for site in list(self._sites.values()):
            site.clear()

    async def disconnect(self) -> None:
        """Nothing to do: the llmcache `Cache` is the caller's, closed by its owner."""

    def _unreadable(self) -> list[str]:
        """The tiers whose read breaker is open (their reads are misses until they recover)."""
        return [tier.name for tier in self.llmcache.health().tiers if tier.read_state == "open"]

    async def ping(self) -> bool:
        return not self._unreadable()

    async def test_connection(self) -> dict[str, Any]:
        broken = self._unreadable()
        if broken:
            names = ", ".join(broken)
            return {"status": "failed", "message": f"llmcache tiers not readable: {names}"}
        return {"status": "success", "message": "llmcache tiers readable"}

    def __repr__(self) -> str:
        return f"<llmcache_litellm.LLMCacheBackend on {self.llmcache!r}>"
