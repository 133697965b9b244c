"""A backend built from `llmcache.ext` alone: a ``toy://NAME`` tier, registered at run time.

`ToyServer` stands in for a storage server: named stores of this process that every
`ToyBackend` with the same URL reaches, as two processes reach one Redis. The backend shows
the contract: bytes under string keys with a TTL (expired by the backend's `clock`), a
prefix delete, counters, and failures raised as `BackendError`, which the cache turns into
misses and queued writes. README: "Writing a backend". `tests/test_examples_ext.py` also
runs the backend contract suite (`tests/backend_contract.py`) against it.

python examples/backend.py
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import llmcache
from llmcache.ext import Backend, BackendError, ConfigError, register_backend

SECRET = "toy-example-secret-0123456789abcdef"  # any 16 bytes or more; the same everywhere


class ToyServer:
    """One named store: entries with their expiry, counter records, and an on/off switch."""

    _servers: ClassVar[dict[str, ToyServer]] = {}
    _servers_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[bytes, float | None]] = {}  # key → (value, expires at)
        self.counters: dict[str, dict[str, float]] = {}
        self.up = True  # False: every request fails, as a server that went away

    @classmethod
    def named(cls, name: str) -> ToyServer:
        with cls._servers_lock:
            return cls._servers.setdefault(name, cls())


class ToyBackend(Backend):
    """``toy://NAME``: a tier on the `ToyServer` of that name."""

    shared: ClassVar[bool] = True  # others see it (as a server's clients do): needs a secret
    persistent: ClassVar[bool] = True  # it outlives a Cache: generations and ledger live here

    def __init__(self, store: str) -> None:
        self.name = f"toy://{store}"  # shown in stats(), health() and llmcache.info()
        self.server = ToyServer.named(store)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ToyBackend:
        parts = urlsplit(url)
        if options or parts.query or not parts.netloc:
            raise ConfigError(f"a toy tier is toy://NAME, with no options; got {url!r}")
        return cls(parts.netloc)

    def _reach(self) -> ToyServer:
        """The server, or a `BackendError` caused by a connection error (the core reads the
        cause to tell a tier that cannot be reached from one that refused one request)."""
        if not self.server.up:
            refused = ConnectionRefusedError("the toy server is down")
            raise BackendError(f"{self.name}: {refused}") from refused
        return self.server

    # -- the contract ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        found = self._reach().entries.get(key)
        if found is None:
            return None
        value, expires = found
        return value if expires is None or self.clock() < expires else None

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        server = self._reach()
        server.entries[key] = (value, None if ttl is None else self.clock() + ttl)

    def delete(self, key: str) -> None:
        self._reach().entries.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a prefix: it never empties the whole store")
        server = self._reach()
        with server.lock:
            doomed = [key for key in server.entries if key.startswith(prefix)]
            for key in doomed:
                del server.entries[key]
        return len(doomed)

    def scan(self, prefix: str) -> Iterator[str]:
        # Optional: `llmcache export` lists a namespace's keys with it.
        if not prefix:
            raise ValueError("scan needs a prefix: it never lists the whole store")
        server, now = self._reach(), self.clock()
        with server.lock:  # a snapshot: the store may change while the caller walks it
            keys = [
                key
                for key, (_, expires) in server.entries.items()
                if key.startswith(prefix) and (expires is None or now < expires)
            ]
        return iter(keys)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        server = self._reach()
        with server.lock:  # atomic: concurrent flushes of the ledger must all count
            record = server.counters.setdefault(key, {})
            for field, delta in deltas.items():
                record[field] = record.get(field, 0.0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        server = self._reach()
        with server.lock:
            return dict(server.counters.get(key, {}))

    def close(self) -> None:
        pass  # nothing to release: a real backend closes its connections here

    # -- optional -------------------------------------------------------------------------------
    def size(self) -> tuple[int, int] | None:
        entries = list(self._reach().entries.values())
        return len(entries), sum(len(value) for value, _ in entries)


# -- using it -----------------------------------------------------------------------------------
def ask_function(cache: llmcache.Cache, calls: list[str]) -> Any:
    @cache.cached(namespace="research")
    def ask(question: str) -> str:
        calls.append(question)  # stands in for a paid LLM call
        return f"an answer to: {question}"

    return ask


def served(answer: str) -> str:
    info = llmcache.info(answer)  # a str is described right after its call only
    if info is None:
        return "not described"
    return f"hit from {info.tier}" if info.hit else "miss"


def main() -> None:
    register_backend("toy", ToyBackend)
    try:
        llmcache.Cache(workspace="example", tiers=["memory", "toy://demo"])
    except ConfigError as error:
        print(f"without a secret: ConfigError: {str(error)[:60]}...")

    calls: list[str] = []
    first = llmcache.Cache(workspace="example", secret=SECRET, tiers=["memory", "toy://demo"])
    ask = ask_function(first, calls)
    print(f"first cache: {served(ask('Why cache?'))}, real calls {len(calls)}")
    print(f"first cache again: {served(ask('Why cache?'))}, real calls {len(calls)}")

    # Another Cache on the same store, as another process would be: its memory is empty.
    second = llmcache.Cache(workspace="example", secret=SECRET, tiers=["memory", "toy://demo"])
    ask_again = ask_function(second, calls)
    print(f"second cache: {served(ask_again('Why cache?'))}, real calls {len(calls)}")

    ToyServer.named("demo").up = False
    answer = ask_again("Is the tier down?")
    tier = second.health().tiers[1]
    print(f"tier down: {answer!r}, real calls {len(calls)}, no exception")
    print(f"  health: {tier.name} last error {tier.last_error!r}")
    print(f"  writes queued for when it is back: {tier.queued_writes}")

    ToyServer.named("demo").up = True
    deadline = time.monotonic() + 10  # the breaker lets a probe through after its cooldown
    while second.health().tiers[1].queued_writes and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"tier back: queued writes {second.health().tiers[1].queued_writes}")
    print(f"first cache, the answer written late: {served(ask('Is the tier down?'))}")

    print(f"clear(): {second.clear()} entries removed")
    first.close()
    second.close()


if __name__ == "__main__":
    main()
