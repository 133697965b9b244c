"""`llmcache.info(result)`: was this result a hit, from which tier, and what did it save.

Results are remembered by identity in a small bounded map (holding a reference, so an id is
never reused while remembered). Nothing is attached to the result itself, so a pydantic
response keeps its exact schema. The `CallInfo` is built only when asked for; a hit pays for
one dict store.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from pydantic import BaseModel

from ._record import Record
from ._stats import render_html, render_table

__all__ = ["INFO_CAPACITY", "SEEN", "CallInfo", "forget_older_half", "info", "relay", "remember"]

INFO_CAPACITY = 4096
# id(result) → (result or a weak reference to it, record, tier, hit, namespace). Results that
# take weak references (pydantic models, e.g. OpenAI responses) are held weakly, so thousands
# of response trees are not kept alive; others (str, dict, list) are held, which also keeps
# their id from being reused while remembered.
SEEN: dict[int, tuple[Any, Record | None, str | None, bool, str]] = {}
weak_reference = weakref.ref


class CallInfo(BaseModel):
    """How one cached call was served."""

    hit: bool
    tier: str | None  # the tier that served a hit; None for a miss
    key: str | None  # the signed key (None when the result was not stored)
    namespace: str
    age_s: float | None  # how old the entry was when it was served
    model: str | None
    cost_usd: float | None  # what the original (missed) call cost; None if unknown
    saved_cost_usd: float | None  # what this hit saved; 0 for a miss, None if unknown
    saved_time_s: float | None  # the original call's latency, saved by this hit

    def _pairs(self) -> list[tuple[str, object]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    def __str__(self) -> str:
        return render_table(("field", "value"), self._pairs())

    def _repr_html_(self) -> str:
        return render_html(("field", "value"), self._pairs(), "llmcache call info")


def forget_older_half() -> None:
    """Drop the older half at once: amortised O(1), and no per-call bookkeeping."""
    for stale in list(SEEN)[: INFO_CAPACITY // 2]:
        SEEN.pop(stale, None)


def remember(result: Any, record: Record | None, tier: str | None, hit: bool, ns: str) -> None:
    held = weak_reference(result) if type(result).__weakrefoffset__ else result
    SEEN[id(result)] = (held, record, tier, hit, ns)
    if len(SEEN) > INFO_CAPACITY:
        forget_older_half()


def relay(source: Any, target: Any) -> None:
    """Let `target` (e.g. a stream object) report what `source`, its content, reports."""
    seen = SEEN.get(id(source))
    if seen is not None and _held(seen[0]) is source:
        remember(target, *seen[1:])


def _held(held: Any) -> Any:
    return held() if isinstance(held, weakref.ref) else held


def info(result: Any) -> CallInfo | None:
    """How `result` was served, if it came from a cached call recently; else None."""
    seen = SEEN.get(id(result))
    if seen is None:
        return None
    if _held(seen[0]) is not result:
        return None
    _, record, tier, hit, namespace = seen
    meta = record.meta if record is not None else {}
    cost = meta.get("cost_usd")
    latency = meta.get("latency_s")
    return CallInfo(
        hit=hit,
        tier=tier if hit else None,
        key=record.signed_key if record is not None else None,
        namespace=namespace,
        age_s=(time.time() - record.created) if (record is not None and hit) else None,
        model=meta.get("model"),
        cost_usd=cost,
        saved_cost_usd=(cost if hit else 0.0) if (cost is not None or not hit) else None,
        saved_time_s=(latency if hit else 0.0),
    )
