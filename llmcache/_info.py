"""`llmcache.info(result)` and `llmcache.last_info()`: was a call a hit, from which tier, and
what did it save.

Two records, so that a result is never described by another call:

* `LAST`, per thread and per asyncio task (a ContextVar): the last cached call made there,
  set by every cached call, including bypassed ones and those of a disabled cache.
  `last_info()` reads it, and `info(result)` uses it when `result is` that call's result.
* `RECENT`, by identity: results that are a fresh object per call (dicts, lists, pydantic
  models, streams), newest last. Immutable values (str, int, float, bool, None, bytes,
  tuples) are often one shared object (`True`, an interned string, a small int) across
  unrelated calls, so they are never remembered by identity: only `LAST` describes them.

`RECENT` is a deque bounded by count, so remembering a hit is one C-level append (a dict
keyed by `id()` with a byte total cost a memory hit a quarter of its time). `info` reads it
newest first, comparing by identity (`is`), so the newest call that returned an object is
the one that describes it, and an id reused by another object never matches. Results that
take a weak reference (pydantic models, streams) are held weakly; others are held, which
keeps them alive while remembered, so what that holds is bounded in bytes:

* a small result (its record's `size` at most `SMALL_HELD`, or `SMALL_WEAK` held weakly)
  is appended as it is: at most `INFO_CAPACITY` of them, a fixed bound;
* a larger one is also counted in `large_bytes`, and past `LARGE_BUDGET` the oldest
  entries are dropped (`forget_oldest`), never newer ones, so no later call is undone.

A call that returned an object without a record (bypassed, or a disabled cache) leaves a
`Forgotten` mark: nothing older describes that object any more. Nothing is attached to the
result itself, so a pydantic response keeps its exact schema. The `CallInfo` is built only
when asked for (its pydantic model lives in `_stats`, imported then).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._record import Record

if TYPE_CHECKING:
    from ._stats import CallInfo

__all__ = [
    "INFO_CAPACITY",
    "LARGE_BUDGET",
    "LAST",
    "RECENT",
    "SHARED_TYPES",
    "SMALL_HELD",
    "SMALL_WEAK",
    "info",
    "last_info",
    "relay",
    "remember",
    "remember_large",
    "remember_recent",
    "remember_unique",
    "weak_reference",
]

INFO_CAPACITY = 4096  # results remembered by identity, at most
# A held result keeps its decoded value alive (estimated at four times its record's size);
# a weakly held one, only its record. Up to these sizes, INFO_CAPACITY of them keep at most
# 16 MiB alive; larger ones are counted against LARGE_BUDGET, another 16 MiB.
SMALL_HELD = 1024
SMALL_WEAK = 4096
LARGE_BUDGET = 16 * 1024 * 1024
# Types whose values may be one object shared by unrelated calls: described only by `LAST`.
SHARED_TYPES = frozenset({str, int, float, bool, type(None), bytes, tuple})

# (result, record, tier, hit, namespace) of the last cached call in this context.
Described = tuple[Any, Record | None, str | None, bool, str]
LAST: ContextVar[Described | None] = ContextVar("llmcache_last_call", default=None)
# (result, a weak reference to it, or a `Forgotten` mark; record, tier, hit, namespace),
# newest last. Never rebound: the hot path holds its `append`.
RECENT: deque[tuple[Any, Record | None, str | None, bool, str]] = deque(maxlen=INFO_CAPACITY)
remember_recent = RECENT.append
large_bytes = [0]  # what large entries appended since the last recount keep alive (errs high)
_forgetting = threading.Lock()
weak_reference = weakref.ref


class Forgotten:
    """The mark of a call that returned an object it kept no record of: stop looking."""

    __slots__ = ("id",)

    def __init__(self, result: Any) -> None:
        # Exact although ids are reused: an entry older than this mark with the same id was
        # made while `result` was alive, so it is of `result` itself.
        self.id = id(result)


def remember(result: Any, record: Record | None, tier: str | None, hit: bool, ns: str) -> None:
    """Note how a cached call that returned `result` was served (a bypass: no record)."""
    LAST.set((result, record, tier, hit, ns))
    if type(result) not in SHARED_TYPES:
        remember_unique(result, record, tier, hit, ns)


def remember_unique(
    result: Any, record: Record | None, tier: str | None, hit: bool, ns: str
) -> None:
    """Remember a result that is a fresh object per call, by identity (after `LAST.set`).

    `HotPath.memory_hit` inlines these lines.
    """
    if record is None:  # no measure of what holding it would cost: `LAST` alone describes it
        remember_recent((Forgotten(result), None, tier, hit, ns))  # and no older call may
    elif type(result).__weakrefoffset__:
        if record.size <= SMALL_WEAK:
            remember_recent((weak_reference(result), record, tier, hit, ns))
        else:
            remember_large(result, record, tier, hit, ns)
    elif record.size <= SMALL_HELD:
        remember_recent((result, record, tier, hit, ns))
    else:
        remember_large(result, record, tier, hit, ns)


def remember_large(result: Any, record: Record, tier: str | None, hit: bool, ns: str) -> None:
    """Remember a result whose record is over the small sizes, within `LARGE_BUDGET`."""
    if type(result).__weakrefoffset__:
        remember_recent((weak_reference(result), record, tier, hit, ns))
    else:
        remember_recent((result, record, tier, hit, ns))
    large_bytes[0] += _weight(result, record)
    if large_bytes[0] > LARGE_BUDGET:
        forget_oldest()


def _weight(held: Any, record: Record | None) -> int:
    """The bytes an entry keeps alive if it is a large one, else 0."""
    if record is None:
        return 0
    if type(held) is weakref.ref:  # what takes a weak reference is always held by one
        return record.size if record.size > SMALL_WEAK else 0
    return record.size << 2 if record.size > SMALL_HELD else 0


def forget_oldest() -> None:
    """Drop the oldest entries until large ones keep at most half of `LARGE_BUDGET` alive.

    Only the oldest are dropped (`popleft`, as the deque's bound does), so an append made
    meanwhile by another thread is never lost. The total is recounted over what is kept:
    entries pushed out by the bound were never subtracted.
    """
    with _forgetting:
        total = 0
        for held, record, *_ in RECENT.copy():  # the common entry is small: one comparison
            if record is not None and record.size > SMALL_HELD:
                total += _weight(held, record)
        while total > LARGE_BUDGET // 2 and RECENT:
            try:
                oldest = RECENT.popleft()
            except IndexError:  # emptied by another thread meanwhile
                break
            total -= _weight(oldest[0], oldest[1])
        large_bytes[0] = total


def _new_lock_in_child() -> None:
    """A forked child gets a fresh `_forgetting`: a thread of the parent may have held it."""
    global _forgetting
    _forgetting = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_lock_in_child)


def _describing(result: Any) -> Described | None:
    """What is known of the last call that returned this very object, if anything.

    A fresh object's newest entry in `RECENT` is its latest description from any context (a
    stream is described anew when it completes, in the context that stores it); `LAST` is
    this context's last call, the only description of a value that may be shared.
    """
    if type(result) not in SHARED_TYPES:
        wanted = id(result)
        for entry in reversed(RECENT.copy()):  # a copy: other threads append meanwhile
            held = entry[0]
            if held is result:
                return (result, *entry[1:])  # type: ignore[return-value]
            kind = type(held)
            if kind is weakref.ref:
                if held() is result:
                    return (result, *entry[1:])  # type: ignore[return-value]
            elif kind is Forgotten and held.id == wanted:
                break  # its last call kept no record: only `LAST` may describe it
    last = LAST.get()
    if last is not None and last[0] is result:
        return last
    return None


def relay(source: Any, target: Any) -> None:
    """Let `target` (e.g. a stream object) report what `source`, its content, reports."""
    seen = _describing(source)
    if seen is not None:
        remember(target, *seen[1:])


def info(result: Any, *, clock: Callable[[], float] = time.time) -> CallInfo | None:
    """How `result` was served, if it came from a recent cached call; else None.

    A str, number, bool, None, bytes or tuple is described only if it is the result of the
    last cached call in this thread or task (such values may be shared by unrelated calls);
    `last_info()` describes that call whatever it returned. `clock` tells the age of a hit:
    the clock of the cache that served it, if that cache was built with `clock=`.
    """
    seen = _describing(result)
    return None if seen is None else _call_info(seen, clock)


def last_info(*, clock: Callable[[], float] = time.time) -> CallInfo | None:
    """How the last cached call in this thread (or asyncio task) was served; else None."""
    seen = LAST.get()
    return None if seen is None else _call_info(seen, clock)


def _call_info(seen: Described, clock: Callable[[], float]) -> CallInfo:
    # The pydantic model is built on the first call that asks (not at `import llmcache`).
    from ._stats import CallInfo

    _, record, tier, hit, namespace = seen
    meta = record.meta if record is not None else {}
    cost = meta.get("cost_usd")
    latency = meta.get("latency_s")
    return CallInfo(
        hit=hit,
        tier=tier if hit else None,
        key=record.signed_key if record is not None else None,
        namespace=namespace,
        age_s=(clock() - record.created) if (record is not None and hit) else None,
        model=meta.get("model"),
        cost_usd=cost,
        saved_cost_usd=(cost if hit else 0.0) if (cost is not None or not hit) else None,
        saved_time_s=(latency if hit else 0.0),
    )
