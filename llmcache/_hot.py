"""The hot path: a hit served in about a microsecond. The only module with inlined code.

A hit in memory (or, memory missing, in the first tier below it) for a call under no
`options` is served here: the decorator's wrappers and `CallSite.call` key the call in one
`fast_body` + one xxh3 call, then `HotPath.memory_hit` or `HotPath.lower_hit`. Everything
else goes to the general flow (`_async/_flow.py`, and `_sync/_flow.py` written from it).

These lines repeat what the flow does, with the Python call layers folded in, because each
layer costs a measurable share of a hit (benchmarks/bench_core.py). What they repeat, and
must stay equal to, is named at each place; `tests/test_hot_path.py` proves with
hypothesis that the hot and the general path give the same value, key, counters, ledger
and `llmcache.info` for random calls, options and tier states.

A `HotPath` reads its cache's parts through references taken once. They stay right because
the cache never rebinds them: `Cache._tiers`, `Ledger.noted_hits` and `KeySchedule.signed_memo`
are changed in place only (`tests/test_hot_path.py` checks this across clear, invalidate
and fork).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson

from ._canonical import (
    FAST_OPTION,
    Binder,
    TagNeeded,
    arguments_need_tags,
    canonical_bytes,
    fast_body,
    fast_default,
)
from ._codec import Unstorable
from ._fingerprint import xxh3_128
from ._info import (
    LAST,
    SHARED_TYPES,
    SMALL_HELD,
    SMALL_WEAK,
    remember_large,
    remember_recent,
    remember_unique,
    weak_reference,
)
from ._ledger import HIT_BATCH
from ._options import current_options
from ._record import NO_EXPIRY, NOT_SHARED, IntegrityError, decode_entry
from ._steps import IMMUTABLE, MISS, decoder_for, reject, serve
from ._telemetry import OBSERVER

if TYPE_CHECKING:
    from ._namespaces import Namespace
    from ._site import CallSite

__all__ = [
    "HotPath",
    "KeyToken",
    "acall",
    "aget",
    "aget_by",
    "async_wrapper",
    "call",
    "get",
    "get_by",
    "sync_wrapper",
    "token",
]

_T = TypeVar("_T")


def _load_c_memory_hit() -> Callable[[tuple[Any, ...], Any, int], Any] | None:
    """The C memory hit (`llmcache._speedups`), configured; None: the Python method only."""
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from ._speedups import configure_hits, memory_hit
    except ImportError:  # not built (no compiler at install): the Python method
        return None
    configure_hits(NOT_SHARED, OBSERVER, LAST, HIT_BATCH)
    return memory_hit


_c_memory_hit = _load_c_memory_hit()


class KeyToken(NamedTuple):
    """A request's key at one site in one generation of its namespace (`token`, `get_by`):
    opaque to adapters, who only keep it."""

    site: CallSite
    namespace: Namespace
    state: tuple[int, str]
    fingerprint: int
    prefix: str


set_last_call = LAST.set  # `llmcache.info`'s per-context last call, set on every hit path


class HotPath:
    """One site's inlined hit path: memory first, then the tiers below it."""

    __slots__ = (
        "_aead",
        "_clock",
        "_counters",
        "_decoders",
        "_entries_get",
        "_ledger",
        "_memory",
        "_name",
        "_noted",
        "_recent",
        "_signed_key",
        "_signed_memo",
        "_site",
        "_tiers",
        "memory_hit",
    )

    def __init__(self, site: CallSite) -> None:
        cache = site.cache
        self._site = site
        memory = self._memory = cache.memory
        # The memory tier's dicts, changed in place only (never rebound).
        entries: dict[Any, Any] = memory._entries if memory is not None else {}
        self._entries_get = entries.get
        self._recent: dict[Any, None] = memory._recent if memory is not None else {}
        self._tiers = cache._tiers
        self._ledger = cache.ledger
        self._noted = cache.ledger.noted_hits
        self._signed_key = cache._keys.signed_key
        self._signed_memo = cache._keys.signed_memo
        self._clock = cache.clock
        self._aead = cache._entry_aead
        self._decoders = site._decoders  # filled by `decoder_for`
        self._counters = site.counters
        self._name = site.namespace.name
        # `memory_hit`: the C form (a shared value's hit in C, the rest through the Python
        # method), or the Python method itself when the accelerator is not built.
        self.memory_hit: Callable[[int], Any] = self.memory_hit_python
        if _c_memory_hit is not None:
            state = (entries, self._recent, self._counters, self._noted, self._name)
            self.memory_hit = functools.partial(_c_memory_hit, state, self.memory_hit_python)

    def memory_hit_python(self, fingerprint: int) -> Any:
        """The memory tier's value for a fingerprint (counted, remembered), or MISS:
        `memory_hit` in Python (the C form, `_memory_hit.h`, does a shared value's hit with
        the same steps, and calls this for everything else).

        Equal to the flow's `memory_lookup` + `serve` for a call under no options.
        """
        # `MemoryTier.lookup`, inlined: a dict get, the expiry check, the recency mark.
        record = self._entries_get(fingerprint)  # an empty dict's when there is no memory tier
        if record is None:
            if self._memory is not None:
                self._counters.memory_misses += 1
            return MISS
        expires = record.expires
        if expires != NO_EXPIRY and expires <= self._memory.clock():  # type: ignore[union-attr]
            self._memory.discard(fingerprint)  # type: ignore[union-attr]
            self._counters.memory_misses += 1
            return MISS
        self._recent[fingerprint] = None
        self._counters.memory_hits += 1
        name = self._name
        # `Ledger.hit` and `remember(...)`, inlined: this is every memory hit's path.
        noted = self._noted
        noted.append((name, record))
        if len(noted) >= HIT_BATCH:
            self._ledger.drain_hits()
        observer = OBSERVER[0]
        if observer is not None:
            observer.served(self._site, record, "memory", name)
        value = record.shared
        if value is not NOT_SHARED:
            # A str, number, bool, None or bytes (the only values `encode` and `verify`
            # share): SHARED_TYPES, described by `LAST` alone.
            set_last_call((value, record, "memory", True, name))
            return value
        value = record.decoder(record.value_json)  # type: ignore[misc]
        described = (value, record, "memory", True, name)
        set_last_call(described)
        # `remember_unique`, inlined for the usual fresh objects; no value of SHARED_TYPES
        # (never remembered by identity) is a dict, a list or takes a weak reference.
        kind = type(value)
        if kind is dict or kind is list:
            if record.size <= SMALL_HELD:
                remember_recent(described)
            else:
                remember_large(value, record, "memory", True, name)
        elif kind.__weakrefoffset__:
            if record.size <= SMALL_WEAK:
                remember_recent((weak_reference(value), record, "memory", True, name))
            else:
                remember_large(value, record, "memory", True, name)
        elif kind not in SHARED_TYPES:
            remember_unique(value, record, "memory", True, name)
        return value

    def lower_hit(self, fingerprint: int, namespace: Namespace, prefix: str) -> Any:
        """The value a tier below memory holds for a call under no options, or MISS.

        Equal to the flow's `lower_lookup` + `verify` + `promote` + `serve`, folded into one
        loop.
        """
        signed_key = self._signed_memo.get(fingerprint) or self._signed_key(prefix, fingerprint)
        index = 0
        for tier in self._tiers:
            data = tier.get(signed_key)
            if data is None:
                tier.counters.misses += 1
                index += 1
                continue
            try:
                record = decode_entry(data, signed_key, self._aead)
                decoder = self._decoders.get(record.tag) or decoder_for(self._site, record.tag)
                value = decoder(record.value_json)
            except (IntegrityError, Unstorable, ValueError) as error:
                reject(tier, error)
                index += 1
                continue
            expires = record.expires
            if expires != NO_EXPIRY and expires <= self._clock():  # no clock read without a TTL
                tier.counters.misses += 1
                index += 1
                continue
            tier.counters.hits += 1
            if index or self._memory is not None:  # a faster tier above to fill
                record.decoder = decoder
                if type(value) in IMMUTABLE:
                    record.shared = value
                self._site.sync_flow.promote(fingerprint, record, data, index)
            self._counters.lower_hits += 1
            name = namespace.name
            # `Ledger.hit` and `remember(...)`, inlined as in `memory_hit`. The ledger is
            # given the metadata bytes, not this short-lived record, to group hits by.
            noted = self._noted
            noted.append((name, record.meta_json))
            if len(noted) >= HIT_BATCH:
                self._ledger.drain_hits()
            observer = OBSERVER[0]
            if observer is not None:
                observer.served(self._site, record, tier.name, name)
            set_last_call((value, record, tier.name, True, name))
            kind = type(value)
            if kind not in SHARED_TYPES:  # a fresh object: also remembered by identity
                remember_unique(value, record, tier.name, True, name)
            return value
        return MISS


# -- the entry points: a decorated function's wrapper, and a provider site's call ------------------
def sync_wrapper(function: Callable[..., Any], site: CallSite, binder: Binder) -> Any:
    """The wrapper of a sync cached function."""
    # `async_wrapper` below repeats this keying. It is not generated from it like the flow:
    # the hot path must stay one Python frame, and the async one stops at memory (a lower
    # tier needs awaiting). Each name is bound once, as a closure cell the wrapper reads.
    cache = site.cache
    namespace = site.namespace
    hot = site.hot
    memory_hit = hot.memory_hit
    lower_hit = hot.lower_hit
    flow = site.sync_flow
    memory = cache.memory
    bind = binder.bind
    version = site.version
    head = (site.identity, version)
    where = site.identity
    need_tags, dumps, default = arguments_need_tags, orjson.dumps, fast_default

    def slow_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return canonical_bytes(bind(args, kwargs), where, head)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_options() is None and cache._serving and namespace.loaded:
            try:  # `fast_body`, inlined
                arguments = bind(args, kwargs)
                if need_tags(arguments):
                    raise TagNeeded
                body = dumps((where, version, arguments), option=FAST_OPTION, default=default)
            except Exception:  # the slow path canonicalises it, or names the bad argument
                return flow.run(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))
            seed, prefix = namespace.state
            fingerprint = xxh3_128(body, seed)
            if memory is not None:
                value = memory_hit(fingerprint)
                if value is not MISS:
                    return value
            value = lower_hit(fingerprint, namespace, prefix)
            if value is not MISS:
                return value
            compute = lambda: function(*args, **kwargs)  # noqa: E731 (made only on a miss)
            return flow.miss(fingerprint, namespace, prefix, compute, None, None, body)
        return flow.run(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))

    return wrapper


def async_wrapper(function: Callable[..., Any], site: CallSite, binder: Binder) -> Any:
    """The wrapper of an async cached function: memory hits here, the rest awaited."""
    # The keying of `sync_wrapper`, repeated on purpose (see there).
    cache = site.cache
    namespace = site.namespace
    memory_hit = site.hot.memory_hit
    flow = site.async_flow
    memory = cache.memory
    bind = binder.bind
    version = site.version
    head = (site.identity, version)
    where = site.identity
    need_tags, dumps, default = arguments_need_tags, orjson.dumps, fast_default

    def slow_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return canonical_bytes(bind(args, kwargs), where, head)

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_options() is None and cache._serving and namespace.loaded:
            try:  # `fast_body`, inlined
                arguments = bind(args, kwargs)
                if need_tags(arguments):
                    raise TagNeeded
                body = dumps((where, version, arguments), option=FAST_OPTION, default=default)
            except Exception:
                return await flow.run(
                    lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs)
                )
            seed, prefix = namespace.state
            fingerprint = xxh3_128(body, seed)
            if memory is not None:
                value = memory_hit(fingerprint)
                if value is not MISS:
                    return value
            compute = lambda: function(*args, **kwargs)  # noqa: E731 (made only on a miss)
            return await flow.resolve(
                fingerprint, namespace, prefix, compute, None, False, None, body
            )
        return await flow.run(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))

    return wrapper


def fast_key(site: CallSite, request: Mapping[str, Any]) -> tuple[int, str] | None:
    """(fingerprint, key prefix) of a request under no options; None: take the long way."""
    namespace = site.namespace
    if current_options() is not None or not site.cache._serving or not namespace.loaded:
        return None
    try:
        body = fast_body(site.identity, site.version, request)
    except Exception:  # the long way canonicalises it, or names what cannot be keyed
        return None
    seed, prefix = namespace.state
    return xxh3_128(body, seed), prefix


def call(
    site: CallSite,
    request: Mapping[str, Any],
    compute: Callable[[], _T],
    *,
    keep: Callable[[Any], bool] | None = None,
) -> _T:
    """The cached result for `request`, or `compute()`'s (stored), single-flight.

    `keep(result)` False: the result reaches the caller (and any caller waiting for the
    same call) but is not stored, e.g. a response that did not finish.

    This is `CallSite.call` itself (bound in its class body: no extra frame on a provider's
    hit), with `fast_key` inlined.
    """
    namespace = site.namespace
    if current_options() is None and site.cache._serving and namespace.loaded:
        try:  # `fast_body`, inlined
            body: bytes | None = None
            if not arguments_need_tags(request):
                body = orjson.dumps(
                    (site.identity, site.version, request), option=FAST_OPTION, default=fast_default
                )
        except Exception:  # the long way canonicalises it, or names what cannot be keyed
            body = None
        if body is not None:
            seed, prefix = namespace.state
            fingerprint = xxh3_128(body, seed)
            hot = site.hot
            value = hot.memory_hit(fingerprint)
            if value is not MISS:
                return value  # type: ignore[no-any-return]
            value = hot.lower_hit(fingerprint, namespace, prefix)
            if value is not MISS:
                return value  # type: ignore[no-any-return]
            return site.sync_flow.miss(fingerprint, namespace, prefix, compute, None, keep, body)
    flow = site.sync_flow
    return flow.run(lambda: flow.canonical(request), compute, keep)


async def acall(
    site: CallSite,
    request: Mapping[str, Any],
    compute: Callable[[], Awaitable[_T]],
    *,
    keep: Callable[[Any], bool] | None = None,
) -> _T:
    """`call` for coroutines: `compute()` is awaited. A memory hit is served here, the
    rest by the async flow. This is `CallSite.acall` itself (bound in its class body)."""
    flow = site.async_flow
    keyed = fast_key(site, request)
    if keyed is None:
        return await flow.run(lambda: flow.canonical(request), compute, keep)
    fingerprint, prefix = keyed
    value = site.hot.memory_hit(fingerprint)
    if value is not MISS:
        return value  # type: ignore[no-any-return]
    return await flow.resolve(
        fingerprint,
        site.namespace,
        prefix,
        compute,
        None,
        False,
        keep,
        lambda: flow.canonical(request),
    )


def get(site: CallSite, request: Mapping[str, Any]) -> Any:
    """The cached value for `request` (counted as a hit), or MISS.

    This is `CallSite.get` itself (bound in its class body), `call`'s lookup without the
    call: for adapters whose framework makes the real call and stores it itself (LangChain,
    LiteLLM, DSPy). The flow's `get` takes what this does not serve.
    """
    keyed = fast_key(site, request)
    if keyed is None:
        return site.sync_flow.get(request)
    fingerprint, prefix = keyed
    hot = site.hot
    value = hot.memory_hit(fingerprint)
    if value is MISS:
        value = hot.lower_hit(fingerprint, site.namespace, prefix)
    return value


def token(site: CallSite, request: Mapping[str, Any]) -> KeyToken | None:
    """A reusable handle on `request`'s key, for `get_by`; None if it takes the long way.

    This is `CallSite.token` itself. An adapter that sees the same request again in a form
    it can look up for less than keying costs (LangChain's prompt and model strings, a dict
    key) keeps the token under that form: `get_by` then skips canonicalising and hashing.
    """
    namespace = site.namespace
    if current_options() is not None or not site.cache._serving or not namespace.loaded:
        return None
    try:
        body = fast_body(site.identity, site.version, request)
    except Exception:  # the long way canonicalises it, or names what cannot be keyed
        return None
    state = namespace.state  # read once: the seed and prefix of one generation
    return KeyToken(site, namespace, state, xxh3_128(body, state[0]), state[1])


def get_by(site: CallSite, key_token: KeyToken, request: Mapping[str, Any]) -> Any:
    """`get(request)` through a token `token(request)` gave: the same value and counts.

    This is `CallSite.get_by` itself. A token stands only for the generation it was made
    in: once the namespace (or the function's scope) is cleared, or under options, or
    while the cache serves no hits, this is `get(request)` itself.
    """
    made_at, namespace, state, fingerprint, prefix = key_token
    if (
        current_options() is None
        and site.cache._serving
        and namespace.state is state
        and namespace.loaded
        and made_at is site
        and site.namespace is namespace
    ):
        hot = site.hot
        value = hot.memory_hit(fingerprint)
        if value is MISS:
            value = hot.lower_hit(fingerprint, namespace, prefix)
        return value
    return get(site, request)


async def aget_by(site: CallSite, key_token: KeyToken, request: Mapping[str, Any]) -> Any:
    """`get_by` for coroutines: a tier below memory is read without blocking the loop.
    `CallSite.aget_by` itself."""
    made_at, namespace, state, fingerprint, prefix = key_token
    if (
        current_options() is None
        and site.cache._serving
        and namespace.state is state
        and namespace.loaded
        and made_at is site
        and site.namespace is namespace
    ):
        value = site.hot.memory_hit(fingerprint)
        if value is not MISS:
            return value
        found = await site.async_flow.lower_lookup(fingerprint, prefix, None)
        return MISS if found is None else serve(site, found, namespace)
    return await aget(site, request)


async def aget(site: CallSite, request: Mapping[str, Any]) -> Any:
    """`get` for coroutines: a memory hit is served here, the rest by the async flow (a
    tier below memory is read without blocking the loop). `CallSite.aget` itself."""
    keyed = fast_key(site, request)
    if keyed is None:
        return await site.async_flow.get(request)
    fingerprint, prefix = keyed
    value = site.hot.memory_hit(fingerprint)
    if value is not MISS:
        return value
    found = await site.async_flow.lower_lookup(fingerprint, prefix, None)
    return MISS if found is None else serve(site, found, site.namespace)
