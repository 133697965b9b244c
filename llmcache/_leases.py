"""Cross-process single-flight locks held as short leases, renewed while the real call runs.

A leader takes the tier's lock for one lease (`Cache.lock_ttl`, 3 s by default). One
background thread per process renews every lease the process holds, a third of a lease
before it would lapse, with the tier's compare-token-and-extend (`Backend.renew_lock`). So a
live leader keeps its lock however long its call takes, and a leader that dies outright
(SIGKILL, power loss) stops renewing: its lock lapses within one lease and a waiter takes
over, instead of every waiter sitting out a long fixed TTL.

A backend that cannot renew (a third-party one that does not override `renew_lock`) gets
its lock for `UNRENEWED_LOCK_TTL` instead, as before leases: a long call is not duplicated,
and a dead leader blocks the others that long.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from ._backend import Backend

if TYPE_CHECKING:
    from ._resilience import GuardedTier

__all__ = ["LEASES", "UNRENEWED_LOCK_TTL", "Lease", "Leases", "lease_seconds"]

UNRENEWED_LOCK_TTL = 60.0
_RENEWALS_PER_LEASE = 3  # renew this often per lease: two may fail before it lapses


def lease_seconds(tier: GuardedTier, lock_ttl: float) -> float:
    """How long a lock taken on `tier` should live between renewals."""
    if type(tier.backend).renew_lock is Backend.renew_lock:
        return max(lock_ttl, UNRENEWED_LOCK_TTL)
    return lock_ttl


class Lease:
    """A lock this process holds on a tier, and when to renew it next."""

    __slots__ = ("due", "key", "pid", "tier", "token", "ttl")

    def __init__(self, tier: GuardedTier, key: str, token: str, ttl: float) -> None:
        self.tier = tier
        self.key = key
        self.token = token
        self.ttl = ttl
        self.pid = os.getpid()  # a forked child must not release its parent's lock
        self.due = time.monotonic() + ttl / _RENEWALS_PER_LEASE


class Leases:
    """The leases this process holds, and the one thread that renews them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._held: set[Lease] = set()
        self._renewer: threading.Thread | None = None

    def hold(self, tier: GuardedTier, key: str, token: str, ttl: float) -> Lease:
        """Keep renewing the lock `key` (taken with `token`) until `drop`."""
        lease = Lease(tier, key, token, ttl)
        with self._changed:
            self._held.add(lease)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="llmcache-leases", daemon=True
                )
                self._renewer.start()
            self._changed.notify()  # its renewal may be due before any other's
        return lease

    def drop(self, lease: Lease) -> bool:
        """Stop renewing `lease`; whether this process took it (and so may unlock it)."""
        with self._changed:
            self._held.discard(lease)
        return lease.pid == os.getpid()

    def __len__(self) -> int:
        return len(self._held)

    def _due_leases(self) -> list[Lease]:
        """Wait until some leases are due for renewal; those leases."""
        with self._changed:
            while True:
                now = time.monotonic()
                due = [lease for lease in self._held if lease.due <= now]
                if due:
                    return due
                soonest = min((lease.due for lease in self._held), default=None)
                self._changed.wait(None if soonest is None else soonest - now)

    def _renew_forever(self) -> None:
        while True:
            for lease in self._due_leases():
                # Outside the lock: a slow tier must not hold up `hold` and `drop`.
                renewed = lease.tier.call("renew_lock", lease.key, lease.token, lease.ttl)
                with self._changed:
                    if renewed is False:
                        # Lost (it lapsed and another process took it): nothing to renew. Our
                        # call goes on; its result is still stored and served.
                        self._held.discard(lease)
                    else:  # renewed, or the tier failed: try again in a third of a lease
                        lease.due = time.monotonic() + lease.ttl / _RENEWALS_PER_LEASE

    def forget_after_fork(self) -> None:
        """In a forked child: the parent renews its own leases, and no thread came along."""
        self._reset()


LEASES = Leases()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LEASES.forget_after_fork)
