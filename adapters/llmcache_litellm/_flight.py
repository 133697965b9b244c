"""Single-flight for LiteLLM's calls: a read that misses claims its key, so that identical
calls of this process (threads, and asyncio tasks of any loop) wait for its write and are
served its entry instead of paying for the same call.

LiteLLM hands a backend a read (``get_cache``) before the call and a write (``set_cache``)
after it, and says nothing to the backend when a call ends without a write. A claim is
therefore ended by the first of:

* the write of its key (`Claims.take_key`: after the entry is stored);
* a failure event of its call (`ClaimEnder`: LiteLLM's logging calls the failure callbacks
  with the call's ``litellm_call_id``, which the claim noted at the read; in this LiteLLM
  version the events carry no ``preset_cache_key``);
* its owner's next call: the same thread's next read, or the same task's next read of a
  call (a completion; not the per-input reads of one embedding call);
* the end of its owner: the thread's, or the task's.

An abandoned stream (never read to its end, so never written) sends no event: its claim
ends with its owner's next call or end, and its waiters wait `Cache.lock_wait` at most.
A ``no-store`` call claims nothing. The reads of an async embedding's inputs claim for the
calling task, in key order (`Batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from llmcache.ext import MISS, CallSite

__all__ = ["Batch", "Claim", "ClaimEnder", "Claims", "ensure_registered"]

log = logging.getLogger("llmcache")


class Claim:
    """One call this process leads: its LiteLLM key, its LiteLLM call id (if known), and
    the release that wakes the identical calls waiting for it. Whoever sets `taken` (under
    `Claims._lock`) is the one who releases it: the write, an event or a backstop."""

    __slots__ = ("call_id", "key", "release", "taken")

    def __init__(self, key: str, release: Callable[[], None], call_id: str | None) -> None:
        self.key = key
        self.release = release
        self.call_id = call_id
        self.taken = False


def _release(claims: Iterable[Claim]) -> None:
    for claim in claims:
        try:
            claim.release()
        except Exception as error:  # pragma: no cover - the core's release does not raise
            log.warning("llmcache: a LiteLLM claim could not be released: %r", error)


class _Held(list[Claim]):
    """A thread's claims. When the thread ends, its claims end with it: a thread that ends
    after a failed call never holds identical calls for `lock_wait`."""

    def __init__(self, claims: Claims) -> None:
        super().__init__()
        self.claims = claims

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown, nothing waits
            self.claims.end(self)


class _Thread(threading.local):
    """Per thread: its claims."""

    held: _Held

    def __init__(self, claims: Claims) -> None:
        self.held = _Held(claims)


class Claims:
    """The claims of one backend, found by key (writes), by call id (failure events), by
    thread and by task (backstops)."""

    def __init__(self) -> None:
        # Re-entrant: a dead thread's claims may be ended by a finalizer (`_Held`) that runs
        # on whichever thread drops them, even one inside `end`.
        self._lock = threading.RLock()
        # Read without the lock on every read (a hit checks that it is empty): the claims
        # not yet taken, by LiteLLM key.
        self.by_key: dict[str, list[Claim]] = {}
        self._by_call: dict[str, Claim] = {}
        self._tasks: dict[asyncio.Task[Any], list[Claim]] = {}
        # The embedding batch each task is making (its reads not yet started), see `Batch`.
        self.batches: weakref.WeakKeyDictionary[asyncio.Task[Any], Batch] = (
            weakref.WeakKeyDictionary()
        )
        self.thread = _Thread(self)
        _LIVE.add(self)

    # -- ending claims -------------------------------------------------------------------------
    def _forget(self, claim: Claim) -> None:
        """Mark `claim` taken and drop it from the indexes (with the lock held)."""
        claim.taken = True
        same = self.by_key.get(claim.key)
        if same is not None:
            same[:] = [other for other in same if other is not claim]
            if not same:
                del self.by_key[claim.key]
        if claim.call_id is not None and self._by_call.get(claim.call_id) is claim:
            del self._by_call[claim.call_id]

    def end(self, claims: Iterable[Claim]) -> None:
        """Release each of `claims` that nobody has taken yet (their waiters go on)."""
        ended = []
        with self._lock:
            for claim in list(claims):
                if not claim.taken:
                    self._forget(claim)
                    ended.append(claim)
        _release(ended)

    def take_key(self, key: str) -> list[Claim]:
        """The claims of `key`, taken by its write: release them once the entry is stored."""
        if not self.by_key:
            return []
        with self._lock:
            claims = list(self.by_key.get(key, ()))
            for claim in claims:
                self._forget(claim)
        return claims

    @staticmethod
    def release(claims: list[Claim]) -> None:
        _release(claims)

    def failed(self, call_id: Any, task: asyncio.Task[Any] | None) -> None:
        """A call failed: end its claim, found by its LiteLLM call id; a call whose read did
        not note one (the backend used without `llmcache_litellm.cache`, an embedding's
        per-input reads) ends the claims of the thread or task the event runs in."""
        if isinstance(call_id, str):
            claim = self._by_call.get(call_id)
            if claim is not None:
                self.end([claim])
                return
        if task is not None:
            held = self._tasks.get(task)
            if held:
                self.end(held)
        else:
            held_here = self.thread.held
            if held_here:
                self.end(held_here)
                held_here.clear()

    def _add(self, claim: Claim) -> None:
        with self._lock:
            self.by_key.setdefault(claim.key, []).append(claim)
            if claim.call_id is not None:
                self._by_call[claim.call_id] = claim

    # -- threads -------------------------------------------------------------------------------
    def lead(self, site: CallSite, key: str, call_id: str | None) -> Any:
        """What an identical call of another thread stored, or MISS: then this thread leads
        the call (its claim ends as the module says)."""
        held = self.thread.held
        if any(claim.key == key and not claim.taken for claim in held):
            return MISS  # this thread's own call again (a retry): never wait for ourselves
        found, release = site.claim({"key": key})
        if found is MISS:
            claim = Claim(key, release, call_id)
            self._add(claim)
            held[:] = [other for other in held if not other.taken]  # written: forget them
            held.append(claim)
        return found

    def next_call_of_thread(self, key: str) -> None:
        """This thread makes a new call: its earlier calls ended (a sync write runs on the
        caller's thread before the call returns), but for a retry of the same key."""
        held = self.thread.held
        if held:
            ended = [claim for claim in held if claim.key != key]
            held[:] = [claim for claim in held if claim.key == key and not claim.taken]
            self.end(ended)

    # -- tasks ---------------------------------------------------------------------------------
    async def alead(
        self, site: CallSite, key: str, call_id: str | None, task: asyncio.Task[Any]
    ) -> Any:
        """`lead` for a task: waiting never blocks the loop."""
        held = self._tasks.get(task)
        if held and any(claim.key == key and not claim.taken for claim in held):
            return MISS  # this task's own call again (a retry)
        found, release = await site.aclaim({"key": key})
        if found is MISS:
            claim = Claim(key, release, call_id)
            self._add(claim)
            held = self._tasks.get(task)
            if held is None:
                held = self._tasks[task] = []
                task.add_done_callback(self._task_done)
            held[:] = [other for other in held if not other.taken]  # written: forget them
            held.append(claim)
        return found

    def next_call_of_task(self, task: asyncio.Task[Any], key: str) -> None:
        """This task makes a new call: its earlier calls ended (see `_end_soon`)."""
        held = self._tasks.get(task)
        if held:
            ended = [claim for claim in held if claim.key != key and not claim.taken]
            if ended:
                held[:] = [claim for claim in held if claim.key == key and not claim.taken]
                self._end_soon(asyncio.get_running_loop(), ended, _TURNS)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A task that claimed is done: its calls that wrote nothing failed or were
        cancelled, and their waiters go on (see `_end_soon`)."""
        held = self._tasks.pop(task, None)
        if held:
            self._end_soon(task.get_loop(), held, _TURNS)

    def _end_soon(self, loop: asyncio.AbstractEventLoop, claims: list[Claim], turns: int) -> None:
        """End `claims` after `turns` turns of `loop`. LiteLLM writes an async call's entry
        in a task it created before the call returned (a stream's, from a task of the task
        that assembles it): by then the write has run up to taking its key, and an ended
        call's claim is not ended under its write."""
        if turns:
            loop.call_soon(self._end_soon, loop, claims, turns - 1)
        else:
            self.end(claims)


class Batch:
    """The per-input reads of one async embedding call. LiteLLM makes them in the calling
    task and runs them at once, each in a task of `asyncio.gather`; the call's claims are
    the calling task's (`task`). Reads that miss claim in the order of their keys, as every
    batch does: two calls of the same inputs in another order would otherwise each lead one
    input and wait for the other's, until `lock_wait`."""

    __slots__ = ("_done", "_prefix", "_rank", "_waiting", "entries", "started", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.entries: list[tuple[str, int]] = []  # (key, position): a key may come twice
        self.started = False  # a read has run: the call has made all its reads
        self._rank: dict[tuple[str, int], int] = {}
        self._done: list[bool] = []
        self._prefix = 0  # how many of the first entries, in key order, are done
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def add(self, key: str) -> tuple[str, int]:
        entry = (key, len(self.entries))
        self.entries.append(entry)
        return entry

    def start(self) -> None:
        """A read of the batch runs: the call has made all of its reads by now."""
        if not self.started:
            self.started = True
            self._rank = {entry: rank for rank, entry in enumerate(sorted(self.entries))}
            self._done = [False] * len(self.entries)

    async def turn(self, entry: tuple[str, int]) -> None:
        """Wait until every read ordered before `entry` has found or claimed its key."""
        rank = self._rank[entry]
        if self._prefix < rank:
            waiting = self._waiting[rank] = asyncio.get_running_loop().create_future()
            await waiting

    def done(self, entry: tuple[str, int]) -> None:
        """`entry` has found or claimed its key: the next read in key order may claim."""
        done = self._done
        done[self._rank[entry]] = True
        while self._prefix < len(done) and done[self._prefix]:
            self._prefix += 1
        # Only the first read not yet done can be waiting for its turn to come.
        waiting = self._waiting.pop(self._prefix, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)


#: Turns of the loop a task's ended claims wait for a write LiteLLM has scheduled: one for
#: a call's write task, one more for a stream's (made by the task that assembles the
#: stream), and one to spare.
_TURNS = 3

#: Every backend's claims, for the failure events (a backend that is gone drops out).
_LIVE: weakref.WeakSet[Claims] = weakref.WeakSet()


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def _failed(kwargs: Any, task: asyncio.Task[Any] | None) -> None:
    call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, dict) else None
    for claims in list(_LIVE):
        claims.failed(call_id, task)


class ClaimEnder(CustomLogger):  # type: ignore[misc]
    """Ends the claim of a LiteLLM call that failed. Registered once, as a failure callback
    only: the success events of hits are never dispatched to it."""

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        _failed(kwargs, None)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        _failed(kwargs, _current_task())


_ENDER = ClaimEnder()


def ensure_registered() -> None:
    """Make LiteLLM send its failure events to `_ENDER`: once, beside the user's own
    callbacks (added, never replaced); again if the user has since reset LiteLLM's lists."""
    import litellm

    if _ENDER in litellm.failure_callback and _ENDER in litellm._async_failure_callback:
        return
    manager = litellm.logging_callback_manager
    if _ENDER not in litellm.failure_callback:
        manager.add_litellm_failure_callback(_ENDER)
    if _ENDER not in litellm._async_failure_callback:
        manager.add_litellm_async_failure_callback(_ENDER)
