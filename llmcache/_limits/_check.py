"""`LimitCheck`: the rate limits a real call passes (`Cache(limits=...)`), as a `MissCheck`.

Each limit that applies to a call (the workspace's for its model, and its namespace's if
set) is one sliding window, named under the workspace's scope, so two workspaces (or two
secrets) never share one: ``llmc-limit:<scope>:<namespace or *>:h<keyed hash of the model>:<window
ms><r|t>``.
A call takes a slot of each in turn; if one has none, the slots already taken are given
back, the call sleeps until that window says a slot frees, and tries again, until its wait
(`limit_wait`) would run out: then `RateLimited`. The leader of a real call is the only one
that enters, so hits and single-flight followers never count.

Windows live in the most shared tier that keeps them (`Backend.supports_windows`: Redis,
Redis Cluster, Upstash), atomically for every process. When that tier is down, or when no
tier keeps windows, each process enforces the limits by itself (`LocalWindows`): logged
once as a warning and shown by ``cache.health()``, never silently unlimited.

Token limits reserve an estimate when the call starts (its ``max_tokens``, or
`DEFAULT_OUTPUT_TOKENS`, plus a quarter of the request's bytes for its input) and settle to
what the provider reported (input + output tokens) when it returns. A failed call keeps its
request slot (the provider saw the request) but gives its tokens back (it used none we can
count). A slot frees `margin` after its window: the time a call takes to reach the provider
varies, and without it the provider's own window could see one call too many.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import RateLimited
from .._resilience import FAILED, GuardedTier
from ._spec import ANY_MODEL, Rate, parse_limits
from ._window import LocalWindows

if TYPE_CHECKING:
    from .._cache import Cache
    from .._gate import PendingCall
    from .._options import Options

__all__ = ["DEFAULT_OUTPUT_TOKENS", "LimitCheck", "margin"]

log = logging.getLogger("llmcache")

DEFAULT_OUTPUT_TOKENS = 1024  # reserved for a call whose request sets no max_tokens
_BYTES_PER_TOKEN = 4  # a rough input estimate: settled to the real count anyway


def margin(window_s: float) -> float:
    """How long after its window a slot frees: 1% of it, at least 20 ms (a call's trip to
    the provider varies by milliseconds, whatever the window) but at most 10% of a short
    window, and at most 0.25 s."""
    return min(max(window_s * 0.01, 0.02), window_s * 0.1, 0.25)


class _Take:
    """One limit as it applies to one call: its window's key and what the call costs it."""

    __slots__ = ("cost", "key", "namespace", "rate", "window_s")

    def __init__(self, key: str, namespace: str | None, rate: Rate, cost: float) -> None:
        self.key = key
        self.namespace = namespace  # None: the workspace's limit
        self.rate = rate
        self.cost = cost
        self.window_s = rate.window_s + margin(rate.window_s)


Store = GuardedTier | LocalWindows


class _Ticket:
    """What a call took, and where: settled when it returns."""

    __slots__ = ("member", "taken")

    def __init__(self, member: str, taken: list[tuple[_Take, Store]]) -> None:
        self.member = member
        self.taken = taken


class _Denied:
    __slots__ = ("retry_s", "take")

    def __init__(self, take: _Take, retry_s: float) -> None:
        self.take = take
        self.retry_s = retry_s


class LimitCheck:
    """The `MissCheck` of `Cache(limits=...)`; `clock`, `sleep` and `asleep` are
    replaceable (tests move time instead of waiting)."""

    def __init__(self, cache: Cache, limits: Mapping[str, Any]) -> None:
        self.cache = cache
        self.rules = parse_limits(limits)
        self.local = LocalWindows()
        windowed = [tier for tier in cache._tiers if tier.backend.supports_windows]
        self.shared: GuardedTier | None = windowed[-1] if windowed else None
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.asleep: Callable[[float], Any] | None = None  # asyncio.sleep, on first use
        self._keys: dict[tuple[str | None, str, Rate], str] = {}
        # Why limits are enforced per process now (None: through the shared tier).
        self.degraded: str | None = None
        if self.shared is None:
            self.degraded = "no tier keeps shared rate-limit windows (Redis or Upstash does)"
            # Several processes can share a disk tier; a memory-only cache is one process.
            level = logging.WARNING if cache._tiers else logging.INFO
            log.log(level, "llmcache: rate limits are enforced per process: %s", self.degraded)

    # -- the MissCheck protocol -------------------------------------------------------------
    def enter(self, call: PendingCall) -> _Ticket | None:
        takes = self.plan(call)
        if not takes:
            return None
        wait = self._wait(call.opts)
        deadline = self.clock() + wait
        while True:
            # A new name each try: what a failed give-back left behind is never taken for it.
            member = secrets.token_hex(8)
            taken, denied = self._take_all(takes, member)
            if denied is None:
                return _Ticket(member, taken)
            if denied.retry_s > deadline - self.clock():
                raise self._refusal(call, denied, wait)
            self.sleep(_jittered(denied.retry_s))

    async def aenter(self, call: PendingCall) -> _Ticket | None:
        takes = self.plan(call)
        if not takes:
            return None
        wait = self._wait(call.opts)
        deadline = self.clock() + wait
        while True:
            # A new name each try: what a failed give-back left behind is never taken for it.
            member = secrets.token_hex(8)
            taken, denied = await self._atake_all(takes, member)
            if denied is None:
                return _Ticket(member, taken)
            if denied.retry_s > deadline - self.clock():
                raise self._refusal(call, denied, wait)
            if self.asleep is None:
                import asyncio  # the caller's loop has loaded it

                self.asleep = asyncio.sleep
            await self.asleep(_jittered(denied.retry_s))

    def settle(self, ticket: _Ticket | None, meta: Mapping[str, Any] | None) -> None:
        """Token windows get the real usage (0 for a failed call); request slots stay."""
        if ticket is None:
            return
        if meta is None:
            used: float | None = 0.0
        else:
            counted = _tokens(meta.get("input_tokens")) + _tokens(meta.get("output_tokens"))
            used = counted or None  # no usage reported: the estimate stands
        if used is None:
            return
        settles = [
            (take, store)
            for take, store in ticket.taken
            if take.rate.kind == "tokens" and take.cost != used
        ]
        if settles:
            _off_the_loop(lambda: self._settle_all(settles, ticket.member, used))

    # -- health ------------------------------------------------------------------------------
    def health_note(self) -> str | None:
        """What `cache.health()` says of the limits while they are enforced per process."""
        if self.degraded is None:
            return None
        shared = self.shared
        if shared is not None and shared.reads.quiet and shared.writes.quiet:
            return None  # the tier answers again: the next call takes its slots there
        return f"rate limits enforced per process only: {self.degraded}"

    # -- which windows a call takes ------------------------------------------------------------
    def plan(self, call: PendingCall) -> list[_Take]:
        """The limits that apply to `call`: the workspace's, then its namespace's."""
        model = call.model
        rules = self.rules
        takes: list[_Take] = []
        estimate: float | None = None
        for namespace in (None, call.namespace.name):
            rates = rules.get((namespace, model)) if model is not None else None
            if rates is None:
                rates = rules.get((namespace, ANY_MODEL))
            if rates is None:
                continue
            for rate in rates:
                if rate.kind == "tokens":
                    if estimate is None:
                        estimate = _estimate(call)
                    cost = min(estimate, float(rate.amount))  # never more than fits at all
                else:
                    cost = 1.0
                key = self._key(namespace, model or ANY_MODEL, rate)
                takes.append(_Take(key, namespace, rate, cost))
        return takes

    def _key(self, namespace: str | None, model: str, rate: Rate) -> str:
        found = self._keys.get((namespace, model, rate))
        if found is None:
            # A keyed hash, as the ledger hides model names: a reader of the shared tier
            # sees when some model was called, not which.
            name = _hashed(model, self.cache._keys.ledger_key)
            window_ms = round(rate.window_s * 1000)
            found = (
                f"llmc-limit:{self.cache._keys.scope}:{namespace or ANY_MODEL}:{name}:"
                f"{window_ms}{rate.kind[0]}"
            )
            if len(self._keys) < 4096:  # bounded: models come from requests
                self._keys[(namespace, model, rate)] = found
        return found

    # -- taking and giving back slots --------------------------------------------------------
    def _take_all(
        self, takes: list[_Take], member: str
    ) -> tuple[list[tuple[_Take, Store]], _Denied | None]:
        taken: list[tuple[_Take, Store]] = []
        for take in takes:
            retry_s, store = self._take(take, member)
            if retry_s > 0:
                self._settle_all(taken, member, None)  # give back what this try took
                return [], _Denied(take, retry_s)
            taken.append((take, store))
        return taken, None

    def _take(self, take: _Take, member: str) -> tuple[float, Store]:
        shared = self.shared
        if shared is not None:
            waited = shared.call(
                "window_take", take.key, take.window_s, take.rate.amount, take.cost, member
            )
            if waited is not FAILED:
                self._shared_works(shared)
                return float(waited), shared  # type: ignore[arg-type]
            self._shared_failed(shared)
        store = self.local
        return store.take(take.key, take.window_s, take.rate.amount, take.cost, member), store

    async def _atake_all(
        self, takes: list[_Take], member: str
    ) -> tuple[list[tuple[_Take, Store]], _Denied | None]:
        taken: list[tuple[_Take, Store]] = []
        for take in takes:
            retry_s, store = await self._atake(take, member)
            if retry_s > 0:
                for given, where in taken:
                    if isinstance(where, GuardedTier):
                        await where.acall("window_settle", given.key, member, given.cost, None)
                    else:
                        where.settle(given.key, member, given.cost, None)
                return [], _Denied(take, retry_s)
            taken.append((take, store))
        return taken, None

    async def _atake(self, take: _Take, member: str) -> tuple[float, Store]:
        shared = self.shared
        if shared is not None:
            waited = await shared.acall(
                "window_take", take.key, take.window_s, take.rate.amount, take.cost, member
            )
            if waited is not FAILED:
                self._shared_works(shared)
                return float(waited), shared  # type: ignore[arg-type]
            self._shared_failed(shared)
        store = self.local
        return store.take(take.key, take.window_s, take.rate.amount, take.cost, member), store

    @staticmethod
    def _settle_all(taken: list[tuple[_Take, Store]], member: str, cost: float | None) -> None:
        for take, store in taken:
            if isinstance(store, GuardedTier):
                store.call("window_settle", take.key, member, take.cost, cost)
            else:
                store.settle(take.key, member, take.cost, cost)

    # -- the shared tier's state ---------------------------------------------------------------
    def _shared_failed(self, shared: GuardedTier) -> None:
        if self.degraded is None:
            self.degraded = f"the shared tier {shared.name} is unavailable"
            log.warning(
                "llmcache: rate limits are enforced per process until %s answers again "
                "(each process allows the whole limit meanwhile)",
                shared.name,
            )

    def _shared_works(self, shared: GuardedTier) -> None:
        if self.degraded is not None:
            self.degraded = None
            log.info("llmcache: rate limits are enforced through %s again", shared.name)

    # -- waiting and refusing ----------------------------------------------------------------
    def _wait(self, opts: Options | None) -> float:
        if opts is not None and opts.limit_wait is not None:
            return opts.limit_wait
        return self.cache.limit_wait

    def _refusal(self, call: PendingCall, denied: _Denied, wait: float) -> RateLimited:
        take = denied.take
        rate = take.rate
        model = call.model or ANY_MODEL
        what = f"model {model!r}" if call.model else "calls that name no model"
        whose = f"workspace {self.cache.workspace!r}"
        if take.namespace is not None:
            whose = f"namespace {take.namespace!r} of {whose}"
        waited = "fail-fast (limit_wait=0)" if wait == 0 else f"no slot within {wait:g} s"
        return RateLimited(
            f"rate limit {rate.text} for {what} ({whose}; a {rate.window_s:g} s sliding "
            f"window) reached, {waited}: a slot frees in {denied.retry_s:.2f} s. Retry "
            f"then, wait longer with llmcache.options(limit_wait=...) or "
            f"Cache(limit_wait=...), or raise the limit in Cache(limits=...)",
            limit=rate.text,
            model=model,
            window_s=rate.window_s,
            retry_after_s=denied.retry_s,
        )


def _estimate(call: PendingCall) -> float:
    """Tokens to reserve before the call: its output cap, plus its input guessed from size."""
    body = call.body
    given = len(body) // _BYTES_PER_TOKEN if body is not None else 0
    return float((call.max_tokens or DEFAULT_OUTPUT_TOKENS) + given)


def _tokens(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


def _hashed(model: str, key: bytes) -> str:
    return "h" + hashlib.blake2b(model.encode(), key=key, digest_size=12).hexdigest()


def _jittered(seconds: float) -> float:
    """A little past the slot, by up to 5 ms: waiters of one window do not all wake at once."""
    return seconds + random.uniform(0.0, min(0.005, seconds * 0.1))


def _off_the_loop(work: Callable[[], None]) -> None:
    """Run `work` now, or on llmcache's I/O threads when called on a running event loop
    (settling is a tier round trip, and the async flow settles without awaiting)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        from .._backend import _executor

        _executor().submit(work)
        return
    work()
