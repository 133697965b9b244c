"""The contract every backend passes: one suite, run against memory, disk, Redis, Redis
Cluster and Upstash (like dogpile's _GenericBackendTestSuite).

Subclass `BackendContract` and provide a `backend` fixture that yields a fresh, empty
backend; the cache-level tests build a `Cache` with that backend as its only tier. A backend
whose server expires entries (Redis, Upstash) also overrides `server_pttl`; the others expire
entries by their `clock`, which the TTL tests move instead of waiting.

A networked backend's fixture gives it generous deadlines (`CONTRACT_TIMEOUT`): this suite
checks what the backend does, not how fast, and the production defaults (50 ms for a
loopback Redis) are shorter than a pause of a loaded two-core CI machine; a timed-out read
would turn an expected integrity failure into a counted error. Deadlines have their own tests
(test_deadlines.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

import llmcache
from llmcache import Backend
from tests.clocks import FakeClock

SECRET = "contract-suite-secret-0123456789"
CONTRACT_TIMEOUT = "timeout=5&connect_timeout=5"  # URL options, see the module's docstring


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"


def _scan_or_skip(backend: Backend, prefix: str) -> list[str]:
    """`backend.scan(prefix)` as a list; skip the test for a backend without scan (an
    optional method: the example's toy backend has none)."""
    try:
        return list(backend.scan(prefix))
    except NotImplementedError:
        pytest.skip(f"{type(backend).__name__} has no scan (optional)")


class BackendContract:
    """Behaviour every `llmcache.Backend` must have."""

    @pytest.fixture
    def backend(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def server_pttl(self) -> Callable[[str], int] | None:
        """For a tier whose server expires keys by its own clock (Redis, Upstash), the PTTL
        that server reports for a key, in milliseconds. None (this default) for a tier that
        expires entries by its `clock` (memory, disk)."""
        return None

    @pytest.fixture
    def clock(self, backend: Backend) -> FakeClock:
        """The backend's clock, moved by the test (a server that keeps time ignores it)."""
        clock = FakeClock()
        backend.clock = clock
        return clock

    # -- bytes in, bytes out ---------------------------------------------------------------
    def test_missing_key_is_none(self, backend: Backend) -> None:
        assert backend.get(_unique("absent")) is None

    def test_round_trips_arbitrary_bytes(self, backend: Backend) -> None:
        payload = bytes(range(256)) * 64 + b"\x00\xff\x00"
        key = _unique("llmc:contract:bytes")
        backend.set(key, payload, None)
        assert backend.get(key) == payload

    def test_large_value(self, backend: Backend) -> None:
        payload = os.urandom(512 * 1024)
        key = _unique("llmc:contract:large")
        backend.set(key, payload, 60)
        assert backend.get(key) == payload

    def test_overwrite_replaces(self, backend: Backend) -> None:
        key = _unique("llmc:contract:over")
        backend.set(key, b"one", None)
        backend.set(key, b"two", None)
        assert backend.get(key) == b"two"

    def test_ttl_expires(
        self, backend: Backend, clock: FakeClock, server_pttl: Callable[[str], int] | None
    ) -> None:
        key = _unique("llmc:contract:ttl")
        backend.set(key, b"short", 1.5)  # a fraction of a second: PX 1500, not 1 or 2 s
        backend.set(key + "-long", b"long", 60)
        assert backend.get(key) == b"short"
        if server_pttl is not None:
            # The server expires the key by its own clock, which no test can move, and then
            # GET finds nothing (test_missing_key_is_none): the TTL it was given is the proof.
            # Under a second's stall allowed between the SET and the PTTL.
            assert 500 < server_pttl(key) <= 1500
            assert 59_000 < server_pttl(key + "-long") <= 60_000
            return
        clock.advance(1.49)
        assert backend.get(key) == b"short"  # not before its time
        clock.advance(0.02)
        assert backend.get(key) is None
        assert backend.get(key + "-long") == b"long"

    def test_delete(self, backend: Backend) -> None:
        key = _unique("llmc:contract:del")
        backend.set(key, b"x", None)
        backend.delete(key)
        assert backend.get(key) is None
        backend.delete(key)  # deleting what is absent is not an error

    def test_get_many_keeps_order_and_gaps(self, backend: Backend) -> None:
        base = _unique("llmc:contract:many")
        backend.set(base + ":a", b"A", None)
        backend.set(base + ":c", b"C", None)
        assert backend.get_many([base + ":a", base + ":b", base + ":c"]) == [b"A", None, b"C"]
        assert backend.get_many([]) == []

    def test_delete_prefix_removes_only_that_prefix(self, backend: Backend) -> None:
        base = _unique("llmc:ws")
        keys = [f"{base}:ns:{i}" for i in range(25)]
        for key in keys:
            backend.set(key, b"v", None)
        other = base + "X:ns:0"  # shares a string prefix but is another workspace
        backend.set(other, b"keep", None)
        assert backend.delete_prefix(base + ":") == 25
        assert all(v is None for v in backend.get_many(keys))
        assert backend.get(other) == b"keep"

    def test_scan_lists_every_key_of_a_prefix_and_only_those(self, backend: Backend) -> None:
        base = _unique("llmc:scan")
        keys = {f"{base}:ns:{i}" for i in range(1200)}  # more than one batch of every tier
        for key in keys:
            backend.set(key, b"v", None)
        backend.set(base + "X:ns:0", b"other", None)  # shares a string prefix only
        backend.set(base + "*[?]:ns", b"glob", None)  # glob characters are literal in a prefix
        assert set(_scan_or_skip(backend, base + ":")) == keys
        assert list(backend.scan(base + "*[?]")) == [base + "*[?]:ns"]
        assert list(backend.scan(base + "-none:")) == []
        with pytest.raises(ValueError):
            list(backend.scan(""))

    def test_scan_leaves_out_expired_keys(
        self, backend: Backend, clock: FakeClock, server_pttl: Callable[[str], int] | None
    ) -> None:
        base = _unique("llmc:scan-ttl")
        backend.set(base + ":short", b"s", 1.0)
        backend.set(base + ":long", b"l", 60)
        _scan_or_skip(backend, base + ":")
        if server_pttl is None:  # a server's clock cannot be moved: its expiry is its own
            clock.advance(1.5)
            assert list(backend.scan(base + ":")) == [base + ":long"]
        else:
            assert set(backend.scan(base + ":")) == {base + ":short", base + ":long"}

    def test_counters_accumulate(self, backend: Backend) -> None:
        key = _unique("llmc-ledger:contract")
        assert backend.read_counters(key) == {}
        backend.incr_counters(key, {"a|m|hits": 1, "a|m|saved_usd": 0.25})
        backend.incr_counters(key, {"a|m|hits": 2, "b|m|hits": 1})
        counters = backend.read_counters(key)
        assert counters["a|m|hits"] == 3
        assert counters["a|m|saved_usd"] == pytest.approx(0.25)
        assert counters["b|m|hits"] == 1

    def test_locks_exclude_and_expire(
        self, backend: Backend, clock: FakeClock, server_pttl: Callable[[str], int] | None
    ) -> None:
        if not backend.supports_locks:
            # A backend without locks must say so by taking none (single-flight across
            # processes then falls back to each process calling once).
            assert backend.try_lock(_unique("llmc:contract:lock"), 1) is None
            return
        key = _unique("llmc:contract:lock")
        token = backend.try_lock(key, 1.5)
        assert token
        assert backend.try_lock(key, 1.5) is None
        backend.unlock(key, "not-the-token")
        assert backend.try_lock(key, 1.5) is None
        backend.unlock(key, token)
        second = backend.try_lock(key, 1.5)
        assert second and second != token
        if server_pttl is not None:  # the server expires the lock (see test_ttl_expires)
            assert 500 < server_pttl(key) <= 1500
            return
        clock.advance(1.49)
        assert backend.try_lock(key, 5) is None  # held until its TTL has passed
        clock.advance(0.02)
        assert backend.try_lock(key, 5) is not None  # an expired lock is free again

    def test_async_methods(self, backend: Backend) -> None:
        key = _unique("llmc:contract:async")

        async def scenario() -> None:
            await backend.aset(key, b"async-value", 30)
            assert await backend.aget(key) == b"async-value"
            assert await backend.aget_many([key, key + "-none"]) == [b"async-value", None]
            await backend.adelete(key)
            assert await backend.aget(key) is None

        asyncio.run(scenario())

    # -- through a Cache: signed entries, tamper detection ------------------------------------
    def _cache(self, backend: Backend, workspace: str = "contract") -> llmcache.Cache:
        return llmcache.Cache(workspace=workspace, secret=SECRET, tiers=[backend])

    def test_cache_miss_then_hit_from_this_tier(self, backend: Backend) -> None:
        cache = self._cache(backend)
        calls: list[str] = []

        @cache.cached(namespace=_unique("n").replace("-", ""))
        def ask(question: str) -> dict[str, Any]:
            calls.append(question)
            return {"answer": question.upper(), "n": [1, 2]}

        assert ask("hello") == {"answer": "HELLO", "n": [1, 2]}
        first = ask("hello")
        first["n"].append(3)  # mutating a hit must not change the next one
        assert ask("hello") == {"answer": "HELLO", "n": [1, 2]}
        assert calls == ["hello"]
        assert cache._tiers[0].counters.hits == 2
        assert backend.get(ask.cache_key("hello")) is not None

    def test_cache_tampered_entry_is_a_counted_miss(self, backend: Backend) -> None:
        cache = self._cache(backend)
        calls: list[str] = []

        @cache.cached(namespace=_unique("t").replace("-", ""))
        def ask(question: str) -> str:
            calls.append(question)
            return "answer " + question

        ask("a")
        ask("b")
        key_a, key_b = ask.cache_key("a"), ask.cache_key("b")
        stored = backend.get(key_a)
        assert stored is not None
        flipped = bytearray(stored)
        flipped[-1] ^= 0x01
        backend.set(key_a, bytes(flipped), None)
        assert ask("a") == "answer a"  # recomputed, not an exception
        backend.set(key_a, stored[:-5], None)  # truncated
        assert ask("a") == "answer a"
        backend.set(key_b, stored, None)  # a valid entry moved to another key
        assert ask("b") == "answer b"
        assert calls == ["a", "b", "a", "a", "b"]
        counters = cache._tiers[0].counters
        assert counters.errors == 0, cache.health()  # a failed read is not what this tests
        assert counters.integrity_failures == 3
