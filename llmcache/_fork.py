"""Per-process state after `os.fork()`: a child starts clean, without its parent's calls.

A forked child gets a copy of its parent's memory but only the thread that forked. So it
would wait forever for the parent's in-flight calls (their leaders are not in the child),
on locks that a vanished thread held (the cache's, the memory tier's, each tier's breakers
and write queue), for a flush of queued writes that no thread runs any more, with no
watcher thread (no invalidations seen, no ledger flushes), and with a copy of counts the
parent will flush itself. Every cache is tracked here, weakly, and reset in the child right
after the fork (`Cache._after_fork_in_child`).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["track_for_fork"]

_CACHES: weakref.WeakSet[Cache] = weakref.WeakSet()


def track_for_fork(cache: Cache) -> None:
    """Reset `cache`'s per-process state in every child forked from now on."""
    _CACHES.add(cache)


def _reset_in_child() -> None:
    for cache in list(_CACHES):
        # A failure here must not kill the child's fork(); the cache then keeps its copy.
        with contextlib.suppress(Exception):
            cache._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_in_child)
