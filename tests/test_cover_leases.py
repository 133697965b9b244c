"""Cross-process single-flight locks are held as short leases, renewed while the real call
runs: a live leader keeps its lock however long its call takes, and a lock it lost (it
lapsed and another process took it) is no longer renewed. Seen from the tier's side, on a
tier that records what it is asked to do."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import llmcache
from llmcache._leases import LEASES, UNRENEWED_LOCK_TTL
from llmcache.ext import Backend

LEASE = 0.3  # lock_ttl: renewed every 0.1 s


class LockingTier(Backend):
    """A persistent tier in a dict that takes locks (and records for how long) and records
    each renewal."""

    supports_locks = True

    def __init__(self, renew_answer: bool) -> None:
        self.name = "locking://test"
        self.items: dict[str, bytes] = {}
        self.counters: dict[str, dict[str, float]] = {}
        self.locks: dict[str, str] = {}
        self.lock_ttls: list[float] = []
        self.renewals: list[tuple[str, str, float]] = []
        self.unlocked: list[tuple[str, str]] = []
        self.renew_answer = renew_answer
        self.renewed = threading.Event()
        self._guard = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LockingTier:
        return cls(True)

    def get(self, key: str) -> bytes | None:
        return self.items.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        return 0

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        record = self.counters.setdefault(key, {})
        for field, delta in deltas.items():
            record[field] = record.get(field, 0.0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self.counters.get(key, {}))

    def close(self) -> None:
        pass

    def try_lock(self, key: str, ttl: float) -> str | None:
        with self._guard:
            if key in self.locks:
                return None
            token = secrets.token_hex(8)
            self.locks[key] = token
            self.lock_ttls.append(ttl)
            return token

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        self.renewals.append((key, token, ttl))
        self.renewed.set()
        return self.renew_answer

    def unlock(self, key: str, token: str) -> None:
        with self._guard:
            self.unlocked.append((key, token))
            if self.locks.get(key) == token:
                del self.locks[key]


def wait_until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def no_leases_held() -> Iterator[None]:
    assert wait_until(lambda: len(LEASES) == 0), "a lease of an earlier test is still held"
    yield
    assert wait_until(lambda: len(LEASES) == 0)


def cache_on(tier: LockingTier) -> llmcache.Cache:
    return llmcache.Cache(workspace="leases", tiers=["memory", tier], lock_ttl=LEASE)


@pytest.mark.usefixtures("no_leases_held")
def test_a_long_call_keeps_its_lock_renewed_and_then_lets_go() -> None:
    tier = LockingTier(renew_answer=True)
    with cache_on(tier) as cache:

        @cache.cached
        def slow(q: str) -> str:
            # Runs past its lease: returns once the lock was renewed at least twice.
            assert wait_until(lambda: len(tier.renewals) >= 2)
            assert len(LEASES) == 1
            return q.upper()

        assert slow("a") == "A"
    key, token, ttl = tier.renewals[0]
    assert ttl == LEASE
    assert {renewal[:2] for renewal in tier.renewals} == {(key, token)}  # the same lock
    assert (key, token) in tier.unlocked  # let go once the answer was stored
    assert key not in tier.locks
    assert LEASE in tier.lock_ttls  # taken for one lease at a time


@pytest.mark.usefixtures("no_leases_held")
def test_a_lost_lock_is_no_longer_renewed_and_the_call_still_answers() -> None:
    tier = LockingTier(renew_answer=False)  # it lapsed and another process took it
    with cache_on(tier) as cache:

        @cache.cached
        def slow(q: str) -> str:
            assert tier.renewed.wait(10)
            assert wait_until(lambda: len(LEASES) == 0)  # dropped while the call runs
            return q.upper()

        assert slow("b") == "B"
        assert slow("b") == "B"  # stored all the same: a hit
        assert cache.stats().hits == 1
    assert len(tier.renewals) == 1


class UnrenewingTier(LockingTier):
    """A third-party tier that takes locks but cannot renew them (Backend's default)."""

    renew_lock = Backend.renew_lock


@pytest.mark.usefixtures("no_leases_held")
def test_a_lock_that_cannot_be_renewed_is_taken_for_long() -> None:
    tier = UnrenewingTier(renew_answer=True)
    with cache_on(tier) as cache:
        assert cache.cached(lambda q: q * 2)("c") == "cc"
    assert UNRENEWED_LOCK_TTL in tier.lock_ttls and LEASE not in tier.lock_ttls
    assert tier.renewals == []
