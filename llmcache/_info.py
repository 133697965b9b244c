"""`llmcache.info(result)` and `llmcache.last_info()`: was a call a hit, from which tier, and
what did it save.

Two records, so that a result is never described by another call:

* `LAST`, per thread and per asyncio task (a ContextVar): the last cached call made there,
  set by every cached call, including bypassed ones and those of a disabled cache.
  `last_info()` reads it, and `info(result)` uses it when `result is` that call's result.
* `SEEN`, by identity: results that are a fresh object per call (dicts, lists, pydantic
  models, streams). Immutable values (str, int, float, bool, None, bytes, tuples) are often
  one shared object (`True`, an interned string, a small int) across unrelated calls, so
  they are never remembered by identity: only `LAST` describes them.

`SEEN` holds weak references where the result takes one (pydantic models); others are held,
which also keeps their id from being reused while remembered. It is bounded by count and by
the bytes it keeps alive (see `remember_unique`). Nothing is attached to the result itself,
so a pydantic response keeps its exact schema. The `CallInfo` is built only when asked for
(its pydantic model lives in `_stats`, imported then).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._record import Record

if TYPE_CHECKING:
    from ._stats import CallInfo

__all__ = [
    "INFO_CAPACITY",
    "INFO_MAX_BYTES",
    "LAST",
    "SEEN",
    "SHARED_TYPES",
    "forget_older_half",
    "held_bytes",
    "info",
    "last_info",
    "relay",
    "remember",
    "remember_unique",
    "weak_reference",
]

INFO_CAPACITY = 4096  # results remembered by identity, at most
INFO_MAX_BYTES = 32 * 1024 * 1024  # what those results and their records keep alive, at most
# Types whose values may be one object shared by unrelated calls: described only by `LAST`.
SHARED_TYPES = frozenset({str, int, float, bool, type(None), bytes, tuple})

# (result, record, tier, hit, namespace) of the last cached call in this context.
Described = tuple[Any, Record | None, str | None, bool, str]
LAST: ContextVar[Described | None] = ContextVar("llmcache_last_call", default=None)
# id(result) → (result or a weak reference to it, record, tier, hit, namespace, bytes): the
# bytes it keeps alive, estimated as its record's `size`, four times over when the result is
# held strongly (a decoded value takes several times its JSON's bytes).
SEEN: dict[int, tuple[Any, Record | None, str | None, bool, str, int]] = {}
held_bytes = [0]  # the sum of SEEN's bytes column
weak_reference = weakref.ref


def remember(result: Any, record: Record | None, tier: str | None, hit: bool, ns: str) -> None:
    """Note how a cached call that returned `result` was served (a bypass: no record)."""
    LAST.set((result, record, tier, hit, ns))
    if type(result) not in SHARED_TYPES:
        remember_unique(result, record, tier, hit, ns)


def remember_unique(
    result: Any, record: Record | None, tier: str | None, hit: bool, ns: str
) -> None:
    """Remember a result that is a fresh object per call, by identity (after `LAST.set`).

    `CallSite.memory_hit` and `CallSite.lower_hit` inline these lines.
    """
    kind = type(result)
    if kind.__weakrefoffset__:
        weight = 0 if record is None else record.size
        SEEN[id(result)] = (weak_reference(result), record, tier, hit, ns, weight)
    elif record is not None:
        weight = record.size << 2
        SEEN[id(result)] = (result, record, tier, hit, ns, weight)
    else:  # no measure of what holding it would cost: `LAST` alone describes it
        SEEN.pop(id(result), None)  # and no older call may
        return
    held_bytes[0] += weight
    if held_bytes[0] > INFO_MAX_BYTES or len(SEEN) > INFO_CAPACITY:
        forget_older_half()


def forget_older_half() -> None:
    """Drop the oldest entries until half the count and half the bytes are free (amortised).

    The byte sum is added to without a lock, and an id remembered again is added twice, so
    it errs high: it is recounted here, over what is kept.
    """
    for stale in list(SEEN)[: max(0, len(SEEN) - INFO_CAPACITY // 2)]:
        SEEN.pop(stale, None)
    total = sum([entry[5] for entry in list(SEEN.values())])
    if total > INFO_MAX_BYTES // 2:  # large results: fewer of them
        for stale in list(SEEN):
            dropped = SEEN.pop(stale, None)
            if dropped is not None:
                total -= dropped[5]
                if total <= INFO_MAX_BYTES // 2:
                    break
    held_bytes[0] = total


def _describing(result: Any) -> Described | None:
    """What is known of the last call that returned this very object, if anything.

    A fresh object's entry in `SEEN` is its latest description from any context (a stream
    is described anew when it completes, in the context that stores it); `LAST` is this
    context's last call, the only description of a value that may be shared.
    """
    if type(result) not in SHARED_TYPES:
        seen = SEEN.get(id(result))
        if seen is not None:
            held = seen[0]
            if (held() if isinstance(held, weakref.ref) else held) is result:
                return seen[:5]  # type: ignore[return-value]
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
