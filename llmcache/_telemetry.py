"""The points where the cache tells an observer how each call went (see `llmcache.otel`).

No observer is set unless one is installed (`llmcache.otel.instrument()`); each point then
costs one list read, and nothing of OpenTelemetry is imported. The core knows only this
protocol, never the observer behind it.

What the observer is told, and when:

* `served`: a hit (`tier` names the tier) or a call that waited for an identical one in
  flight (`tier` "single-flight"). Told on the hit path, so an observer must only note it
  there (a few hundred nanoseconds at most) and do the rest later, off that path.
* `bypassed`: a call made without the cache (``options(bypass=True)``, a disabled cache).
* `real_call`: a context manager around the real call of a miss, entered before it and left
  after it, so that what the call itself emits (an HTTP client's span) is inside it. Its
  `done(meta)` gives the call's ledger metadata (model, tokens, cost, latency).
* `recorded`: a real call that an adapter made itself and hands over when it is complete (a
  stream, through `CallSite.put`), with its metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._record import Record
    from ._site import CallSite

__all__ = ["NO_CALL", "OBSERVER", "Observer", "RealCall", "real_call"]


class RealCall(Protocol):
    """What an observer watches a real call with (a span, for OpenTelemetry)."""

    def __enter__(self) -> RealCall: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def done(self, meta: Mapping[str, Any]) -> None:
        """The call returned; `meta` is what the ledger keeps of it."""


class Observer(Protocol):
    def served(self, site: CallSite, record: Record | None, tier: str, namespace: str) -> None:
        """A hit, or a call served by an identical one's flight (`tier` "single-flight")."""

    def bypassed(self, site: CallSite, namespace: str) -> None:
        """A call made without the cache."""

    def real_call(self, site: CallSite, namespace: str) -> RealCall:
        """Watch the real call of a miss (entered before it, left after it)."""

    def recorded(self, site: CallSite, namespace: str, meta: Mapping[str, Any]) -> None:
        """A real call an adapter made itself and stored once it was complete."""


# The observer, if one is installed: a list cell, so that the hot path reads it without a
# module attribute lookup and `llmcache.otel` can set it.
OBSERVER: list[Observer | None] = [None]


class _NoCall:
    """The real call of a miss when nobody observes: nothing to do."""

    __slots__ = ()

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def done(self, meta: Mapping[str, Any]) -> None:
        return None


NO_CALL = _NoCall()


def real_call(site: CallSite, namespace: str) -> RealCall:
    """The observer's watch of a miss's real call, or a no-op one."""
    observer = OBSERVER[0]
    return NO_CALL if observer is None else observer.real_call(site, namespace)
