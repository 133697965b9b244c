"""A call site: one cached function (or one provider endpoint), and the API adapters use.

A call goes: the hot path (`_hot.py`: key, then memory, then the first tier below) for a
hit under no options; otherwise the flow (`_async/_flow.py`, and `_sync/_flow.py` written
from it): options → key → tiers → single-flight miss → store in every tier → ledger. The
steps that do no I/O (checking an entry, handing a value out, recording a real call's
result) are in `_steps.py`, shared by both flows. Nothing here raises into the caller
because of the cache: only the real call's own exceptions and the caller's own mistakes
(an argument that cannot be keyed) do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import _hot
from ._async._flow import AsyncFlow
from ._codec import ValueCodec
from ._gate import Tickets
from ._info import relay, remember
from ._record import Record
from ._steps import MISS
from ._sync._flow import Flow
from ._usage import Usage, UsageHook

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["MISS", "CallSite", "SiteCounters"]

_T = TypeVar("_T")
Keep = Callable[[Any], bool]


class SiteCounters:
    """Per-site counters; the cache's stats are their sums.

    Plain integer slots, like `_resilience.TierCounters` (per tier): both are added to on the
    hit path, where an attribute increment is the cheapest counter there is.
    """

    __slots__ = (
        "bypassed",
        "coalesced",
        "lower_hits",
        "memory_hits",
        "memory_misses",
        "memory_writes",
        "misses",
        "unstorable",
    )

    def __init__(self) -> None:
        self.memory_hits = 0
        self.lower_hits = 0
        self.memory_misses = 0
        self.memory_writes = 0
        self.misses = 0
        self.coalesced = 0
        self.bypassed = 0
        self.unstorable = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.lower_hits

    def add(self, other: SiteCounters) -> None:
        """Add another site's counts to these (a site that is gone, see `Cache._adopt`)."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class CallSite:
    """Caches one function or endpoint; built by `Cache.cached` and by `Cache.site`.

    The extension API of a provider adapter: `key`, `call` / `acall`, `get` / `aget`,
    `put` / `aput`, `claim` / `aclaim` (a single-flight lead the adapter ends itself, for
    streams), `note_miss` and `share_info`.
    """

    def __init__(
        self,
        cache: Cache,
        identity: str,
        # The options of `Cache.site`, which builds sites for adapters (and the decorator).
        *,
        returns: Any = None,
        namespace: str | None = None,
        ttl: float | None = None,
        version: str | int | None = None,
        usage: UsageHook | None = None,
        provider: str | None = None,
    ) -> None:
        self.cache = cache
        self.identity = identity
        # This site's scope in its namespace: `cache_clear()` gives it a new generation.
        self.namespace = cache.namespace(namespace, identity)
        self.ttl = ttl
        self.codec = ValueCodec(returns)
        self.usage = usage
        self.provider = provider
        self.counters = SiteCounters()
        # The checks' tickets of calls claimed here (`claim`) whose result is not yet `put`.
        self.claims: dict[int, list[Tickets]] = {}
        # Function identity and version come first in every canonical request of this
        # site: `[identity, version, {arguments}]`, one orjson call on the hit path.
        self.version = version
        self._warned_unstorable = False
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        self.sync_flow = Flow(self)
        self.async_flow = AsyncFlow(self)
        self.hot = _hot.HotPath(self)
        cache._adopt(self)  # the cache counts its sites' calls

    # -- the extension API -----------------------------------------------------------------------
    def key(self, request: Mapping[str, Any]) -> str:
        """The signed key `request` has under the current options."""
        return self.sync_flow.key(request)

    # The hit path of a provider's call: the functions in `_hot.py`, bound here as methods
    # (``site.call(request, compute, keep=...)``) so that a hit costs no extra frame.
    call = _hot.call
    acall = _hot.acall
    # ``site.get(request)`` / ``await site.aget(request)``: the cached value (a counted hit)
    # or MISS, with the same hot path.
    get = _hot.get
    aget = _hot.aget
    # ``token = site.token(request)``, then ``site.get_by(token, request)`` (``await
    # site.aget_by(...)``): `get` without
    # keying again, for an adapter that can find the token for less (see `_hot.token`).
    token = _hot.token
    get_by = _hot.get_by
    aget_by = _hot.aget_by

    def put(
        self,
        request: Mapping[str, Any],
        value: Any,
        *,
        latency_s: float,
        meta: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
    ) -> Record | None:
        """Record a real call made by the adapter itself (e.g. a completed stream).

        Args:
            request: the request, as given to `call` or `claim`.
            value: the result to store (and return on later hits).
            latency_s: how long the real call took (what a hit saves in time).
            usage: what the call used, when the adapter knows it (e.g. a stream's final
                usage event): priced like a ``usage_of`` answer. Without it (and without
                `meta`), the usage is read off `value` as for any miss.
            meta: ledger fields given as they are (model, input_tokens, cost_usd, ...); they
                win over `usage`'s, and are priced only by a ``cost_usd`` among them.

        `aput` takes the same arguments: the sync and the async door to one flow step.
        """
        return self.sync_flow.put(request, value, latency_s, meta, usage)

    async def aput(
        self,
        request: Mapping[str, Any],
        value: Any,
        *,
        latency_s: float,
        meta: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
    ) -> Record | None:
        """`put` for coroutines (the same step of the flow as `put`, awaited)."""
        return await self.async_flow.put(request, value, latency_s, meta, usage)

    def claim(self, request: Mapping[str, Any]) -> tuple[Any, Callable[[], None]]:
        """(hit, release) or (MISS, release): lead this request's call, or replay a hit.

        On MISS the caller makes the real call and, once its result is stored with `put`
        (or abandoned), calls `release()`; identical calls of this process wait for that
        (at most `lock_wait`) and then find the stored result. This is the single-flight of
        a delivery that ends after the call returns, such as a stream.
        """
        return self.sync_flow.claim(request)

    async def aclaim(self, request: Mapping[str, Any]) -> tuple[Any, Callable[[], None]]:
        """`claim` for coroutines: waiting never blocks the loop."""
        return await self.async_flow.claim(request)

    def clear(self) -> None:
        """Make this site's entries unreachable in this workspace, in every process (like
        `Cache.invalidate`, for one function or endpoint; it works even while a tier is
        down, see `Invalidation.published`)."""
        self.cache._clear_function(self.namespace.name, self.identity)

    @property
    def lock_wait(self) -> float:
        """How long a caller waits for another's identical call before making its own."""
        return self.cache.lock_wait

    @property
    def stores_below_memory(self) -> bool:
        """Whether `put` writes to a tier below memory (disk, a server): blocking I/O."""
        return bool(self.cache._tiers)

    def note_miss(self, result: Any) -> None:
        """Make `llmcache.info(result)` report a miss (e.g. a live stream, not yet stored)."""
        remember(result, None, None, False, self.namespace.name)

    @staticmethod
    def share_info(source: Any, target: Any) -> None:
        """Make `llmcache.info(target)` report what it reports for `source`.

        For adapters that hand out a wrapper around a cached value: a replayed stream
        reports the hit its recording was; a recorded stream reports its stored miss.
        """
        relay(source, target)

    def __repr__(self) -> str:
        return f"<llmcache.CallSite {self.identity!r} namespace={self.namespace.name!r}>"
