"""`LangChainCache`: llmcache as LangChain's LLM cache (`langchain_core.caches.BaseCache`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.caches import BaseCache

from llmcache.ext import MISS, Cache, CallSite, KeyToken, extension_state, run_in_thread

from ._codec import decode, encode, templates
from ._usage import model_and_provider, usage_of

__all__ = ["LangChainCache"]

log = logging.getLogger("llmcache")

#: The call site's identity: every LangChainCache of a cache with the same options shares it.
IDENTITY = "langchain.llm_cache"
#: Lookups that missed and wait for their update, for the latency a later hit saves.
MAX_PENDING = 4096
#: Key tokens kept for repeated lookups: at most this many, of at most this many characters of
#: prompts and model strings together.
MAX_TOKENS = 4096
MAX_TOKEN_CHARS = 16 * 1024 * 1024

#: The template builders of entries decoded in this process (see _codec), by entry text.
_templates_get = templates.get

#: A claim held on a lookup miss: (prompt, llm_string, release).
_Claim = tuple[str, str, Callable[[], None]]


def _release(claims: list[_Claim]) -> None:
    """Let go of every claim in `claims` (their identical calls stop waiting), emptying it."""
    while claims:
        claims.pop()[2]()


def _release_one(claims: list[_Claim], prompt: str, llm_string: str) -> None:
    """Let go of the claim on (`prompt`, `llm_string`) in `claims`, if there is one."""
    for index, (held, model, release) in enumerate(claims):
        if held == prompt and model == llm_string:
            del claims[index]
            release()
            return


class _Held(list[_Claim]):
    """A thread's claims. When the thread ends, its claims go with it: a thread that ends
    after a failed call (a pool shut down) never holds identical calls for `lock_wait`."""

    def __del__(self) -> None:
        _release(self)


class _Thread(threading.local):
    held: _Held

    def __init__(self) -> None:
        self.held = _Held()


def _site(cache: Cache, namespace: str | None, ttl: float | None) -> CallSite:
    sites: dict[tuple[str | None, float | None], CallSite] = extension_state(
        cache, "llmcache_langchain", dict
    )
    found = sites.get((namespace, ttl))
    if found is None:
        found = sites.setdefault(
            (namespace, ttl), cache.site(IDENTITY, namespace=namespace, ttl=ttl)
        )
    return found


class LangChainCache(BaseCache):
    """LangChain's LLM cache, backed by an llmcache `Cache`.

    ``set_llm_cache(LangChainCache(cache, namespace="research"))``, or
    ``ChatOpenAI(..., cache=LangChainCache(cache))`` for one model. An entry is keyed by the
    exact `prompt` and `llm_string` LangChain gives (the messages, and the model's class,
    constructor arguments and call parameters), in this cache's workspace and `namespace`.

    Args:
        cache: the llmcache `Cache` (its workspace, secret, tiers and ledger).
        namespace: the namespace of the entries (default: the cache's).
        ttl: seconds an entry lives (default: the cache's).
        provider: the genai-prices price list for every call (e.g. "openai" for a gateway in
            front of OpenAI). By default it follows the chat model's package (ChatOpenAI:
            "openai", ChatAnthropic: "anthropic") when it talks to that provider's own API,
            and calls elsewhere are counted unpriced.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        provider: str | None = None,
    ) -> None:
        if not isinstance(cache, Cache):
            raise TypeError(
                f"LangChainCache takes an llmcache.Cache, not {type(cache).__name__}: "
                "LangChainCache(llmcache.Cache(workspace=...))"
            )
        self.cache = cache
        self.provider = provider
        self._site = _site(cache, namespace, ttl)
        # hash((prompt, llm_string)) -> start times of lookups that missed, oldest first. A
        # hash, not the strings: a prompt can be large, and a failed call leaves its entry
        # here until MAX_PENDING newer ones push it out (a collision only moves a latency).
        self._pending: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        # Single-flight. A lookup that misses claims its key, so that identical calls of
        # this process wait for its update instead of paying for the same call. LangChain
        # never says that a call failed, so a claim also ends at its owner's next call (a
        # new `llm_string` object: one `generate` batch passes one to all its lookups) and,
        # for a task, when the task is done (or a thread, when it ends).
        self._thread = _Thread()
        # (prompt, llm_string) -> the request's key token: a repeated lookup finds its key
        # with one dict lookup (the hash LangChain's own cache pays) instead of keying the
        # canonical request again. Bounded in entries and in characters, oldest out first;
        # a token outlives no clear (`get_by` then keys the request anew).
        self._tokens: dict[tuple[str, str], KeyToken] = {}
        self._token_chars = 0
        self._tasks: dict[asyncio.Task[Any], list[_Claim]] = {}

    @property
    def site(self) -> CallSite:
        """The call site behind this cache (its namespace, counters, `key(...)`)."""
        return self._site

    # -- lookups -------------------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> list[Any] | None:
        """The generations stored for this prompt and model, as a new list; None on a miss.

        On a miss, an identical call another thread is making is waited for (at most the
        cache's `lock_wait`) and its generations returned; else this thread leads the call.
        """
        request = {"prompt": prompt, "llm_string": llm_string}
        token = self._tokens.get((prompt, llm_string))
        if token is None:
            token = self._remember_token(prompt, llm_string, request)
        found = self._site.get(request) if token is None else self._site.get_by(token, request)
        held = self._thread.held
        if held and held[0][1] is not llm_string:
            _release(held)  # this thread's previous call ended without an update: it failed
        if found is not MISS:
            # `decode`'s fast path, inlined: every hit's (an entry not ours is no str)
            build = _templates_get(found) if type(found) is str else None
            return build() if build is not None else self._hit(found, prompt, llm_string)
        if any(claimed == prompt for claimed, _, _ in held):
            found = MISS  # one batch asks twice: never wait for ourselves
        else:
            found, release = self._site.claim(request)
            if found is MISS:
                held.append((prompt, llm_string, release))
        if found is MISS:
            self._missed(prompt, llm_string)
            return None
        return self._hit(found, prompt, llm_string)

    async def alookup(self, prompt: str, llm_string: str) -> list[Any] | None:
        """`lookup` for coroutines: the tiers are read, and identical calls of other tasks
        waited for, without blocking the event loop."""
        request = {"prompt": prompt, "llm_string": llm_string}
        token = self._tokens.get((prompt, llm_string))
        if token is None:
            token = self._remember_token(prompt, llm_string, request)
        if token is None:
            found = await self._site.aget(request)
        else:
            found = await self._site.aget_by(token, request)
        tasks = self._tasks
        if tasks:  # some task holds a claim: is it this one, from an earlier call?
            task = asyncio.current_task()
            held = tasks.get(task) if task is not None else None
            if held and held[0][1] is not llm_string:
                self._end_task_claims(task)  # type: ignore[arg-type]
        if found is MISS:
            found = await self._aclaim(request)
            if found is MISS:
                self._missed(prompt, llm_string)
                return None
        return self._hit(found, prompt, llm_string)

    def _remember_token(
        self, prompt: str, llm_string: str, request: dict[str, str]
    ) -> KeyToken | None:
        """The key token of a request seen for the first time, kept for the next lookup of
        the same strings (a dict lookup, where keying hashes the canonical request)."""
        token = self._site.token(request)
        size = len(prompt) + len(llm_string)
        if token is None or size > MAX_TOKEN_CHARS // 16:
            return token  # a huge prompt is keyed each time rather than held
        with self._lock:
            tokens = self._tokens
            if (prompt, llm_string) not in tokens:
                tokens[(prompt, llm_string)] = token
                self._token_chars += size
                while len(tokens) > MAX_TOKENS or self._token_chars > MAX_TOKEN_CHARS:
                    held_prompt, held_model = next(iter(tokens))
                    del tokens[(held_prompt, held_model)]
                    self._token_chars -= len(held_prompt) + len(held_model)
        return token

    async def _aclaim(self, request: dict[str, str]) -> Any:
        """Lead this request's call for the current task, or what an identical one stored."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - LangChain awaits alookup in a task
            return MISS  # no task to see the end of: a plain miss
        prompt, llm_string = request["prompt"], request["llm_string"]
        held = self._tasks.get(task)
        if held and any(claimed == prompt for claimed, _, _ in held):
            return MISS  # one batch asks twice: never wait for ourselves
        found, release = await self._site.aclaim(request)
        if found is MISS:
            held = self._tasks.get(task)
            if held is None:
                held = self._tasks[task] = []
                task.add_done_callback(self._task_done)
            held.append((prompt, llm_string, release))
        return found

    def _end_task_claims(self, task: asyncio.Task[Any]) -> None:
        held = self._tasks.pop(task, None)
        if held is not None:
            task.remove_done_callback(self._task_done)
            _release(held)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A task that claimed is done: its calls that never updated failed (or were
        cancelled), and the identical calls waiting for them go on at once."""
        held = self._tasks.pop(task, None)
        if held is not None:
            _release(held)

    def _hit(self, found: Any, prompt: str, llm_string: str) -> list[Any] | None:
        try:
            return decode(found)
        except Exception as error:  # a bad entry is a miss, never an exception
            log.warning("llmcache: a LangChain entry could not be decoded (%r); a miss", error)
            self._missed(prompt, llm_string)
            return None

    def _missed(self, prompt: str, llm_string: str) -> None:
        now = time.perf_counter()
        with self._lock:
            pending = self._pending
            pending.setdefault(hash((prompt, llm_string)), []).append(now)
            if len(pending) > MAX_PENDING:  # lookups never followed by an update
                del pending[next(iter(pending))]

    def _latency(self, prompt: str, llm_string: str) -> float:
        """Seconds since the oldest unanswered lookup miss of this key (0.0 if none)."""
        now = time.perf_counter()
        key = hash((prompt, llm_string))
        with self._lock:
            starts = self._pending.get(key)
            if not starts:
                return 0.0
            start = starts.pop(0)
            if not starts:
                del self._pending[key]
        return now - start

    # -- updates -------------------------------------------------------------------------------
    def _entry(
        self, prompt: str, llm_string: str, return_val: Sequence[Any]
    ) -> tuple[dict[str, str], str, dict[str, Any]] | None:
        latency = self._latency(prompt, llm_string)
        try:
            text = encode(return_val)
        except Exception as error:  # the caller has its result; we store nothing
            log.warning("llmcache: LangChain generations not stored: %r", error)
            return None
        if text is None:
            log.warning(
                "llmcache: LangChain generations not stored: they do not come back equal "
                "through langchain_core.load (dumps/loads)"
            )
            return None
        model, provider = model_and_provider(llm_string, self.provider)
        try:
            usage = usage_of(return_val, model, provider)
        except Exception:  # an odd usage leaves the call unpriced
            usage = None
        if usage is None:
            # No usage reported: the call is counted unpriced, under its model if known.
            meta: dict[str, Any] = {"latency_s": latency}
            if model is not None:
                meta["meta"] = {"model": model}
        else:
            meta = {"latency_s": latency, "usage": usage}
        return {"prompt": prompt, "llm_string": llm_string}, text, meta

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        """Store the generations of a real call (its cost and time go to the ledger); the
        identical calls waiting for it then read them."""
        try:
            entry = self._entry(prompt, llm_string, return_val)
            if entry is not None:
                request, text, options = entry
                self._site.put(request, text, **options)
        finally:
            held = self._thread.held
            if held:
                _release_one(held, prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Any]) -> None:
        """`update` for coroutines: the tiers are written without blocking the event loop."""
        try:
            entry = self._entry(prompt, llm_string, return_val)
            if entry is not None:
                request, text, options = entry
                await self._site.aput(request, text, **options)
        finally:
            task = asyncio.current_task() if self._tasks else None
            if task is not None:
                held = self._tasks.get(task)
                if held:
                    _release_one(held, prompt, llm_string)
                    if not held:
                        self._end_task_claims(task)  # type: ignore[arg-type]

    # -- clearing ------------------------------------------------------------------------------
    def clear(self, **kwargs: Any) -> None:
        """Make every entry of this namespace's LangChain cache unreachable, in every process.

        Only these entries: other namespaces, cached functions and wrapped clients keep theirs.
        """
        self._site.clear()

    async def aclear(self, **kwargs: Any) -> None:
        """`clear` for coroutines: a tier below memory is written off the event loop."""
        if self._site.stores_below_memory:
            await run_in_thread(self._site.clear)
        else:
            self._site.clear()

    def __repr__(self) -> str:
        return f"<llmcache_langchain.LangChainCache namespace={self._site.namespace.name!r}>"
