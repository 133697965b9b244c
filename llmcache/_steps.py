"""The steps of a cached call that do no I/O, shared by the sync and the async flow.

Checking an entry read from a tier, handing a value out (counted, in the ledger, in
`llmcache.info`), and turning a real call's result into a record. The flows
(`_async/_flow.py` and the `_sync/_flow.py` made from it) do the I/O around these steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._codec import Unstorable
from ._info import remember
from ._options import Options
from ._record import NO_EXPIRY, NOT_SHARED, IntegrityError, Record, decode_entry, encode_entry
from ._telemetry import OBSERVER
from ._usage import Usage, usage_fields, usage_meta

if TYPE_CHECKING:
    from ._namespaces import Namespace
    from ._resilience import GuardedTier
    from ._site import CallSite

__all__ = [
    "MISS",
    "Found",
    "bypassed",
    "count_miss",
    "encode",
    "entry_bytes",
    "follow",
    "fresh",
    "just_finished",
    "memory_lookup",
    "meta_of",
    "record_miss",
    "serve",
    "ttl_of",
    "verify",
    "write_memory",
]

log = logging.getLogger("llmcache")


class _Miss:
    """The type of `MISS`: one object, with a name for tracebacks and debuggers."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "llmcache.MISS"


MISS: Any = _Miss()  # what a lookup returns when nothing usable is cached
Found = tuple[Record, str, Any]  # record, tier name, decoded value (or NOT_SHARED)
# Values a hit may hand out as the cache's own object: they cannot be changed in place.
IMMUTABLE = (str, int, float, bool, type(None), bytes)


def fresh(record: Record, opts: Options | None, now: float) -> bool:
    """Whether `record` may be served now, under the options in force."""
    if record.expires != NO_EXPIRY and record.expires <= now:
        return False
    return opts is None or opts.max_age is None or now - record.created <= opts.max_age


def bypassed(site: CallSite, opts: Options | None) -> bool:
    """Whether this call skips the cache (disabled, or `options(bypass=True)`); counted."""
    if site.cache.enabled and (opts is None or not opts.bypass):
        return False
    site.counters.bypassed += 1
    return True


# -- reading ------------------------------------------------------------------------------------
def memory_lookup(site: CallSite, fingerprint: int, opts: Options | None) -> Found | None:
    """The memory tier's fresh record for a fingerprint (a counted miss if none)."""
    memory = site.cache.memory
    if memory is None:
        return None
    record = memory.lookup(fingerprint)
    if record is not None and fresh(record, opts, site.cache.clock()):
        return record, "memory", NOT_SHARED
    site.counters.memory_misses += 1
    return None


def verify(
    site: CallSite,
    tier: GuardedTier,
    data: bytes | None,
    signed_key: str,
    opts: Options | None,
    count: bool = True,
) -> Found | None:
    """Check an entry read from a tier; anything wrong with it is a (counted) miss.

    `count=False` is for a second look at the same key (after taking a lock): what the
    first look counted is not counted again.
    """
    counters = tier.counters
    if data is None:
        counters.misses += count
        return None
    try:
        record = decode_entry_for(site, data, signed_key)
        decoder = record.decoder
        assert decoder is not None
        value = decoder(record.value_json)
    except (IntegrityError, Unstorable, ValueError) as error:
        if count:
            reject(tier, error)
        return None
    if (opts is not None or record.expires != NO_EXPIRY) and not fresh(
        record, opts, site.cache.clock()
    ):
        counters.misses += count
        return None
    if type(value) in IMMUTABLE:
        record.shared = value
    counters.hits += 1
    return record, tier.name, value


def decode_entry_for(site: CallSite, data: bytes, signed_key: str) -> Record:
    """Decrypt an entry of this site, with the decoder of its type tag attached."""
    record = decode_entry(data, signed_key, site.cache._entry_aead)  # one object
    record.decoder = decoder_for(site, record.tag)
    return record


def decoder_for(site: CallSite, tag: str) -> Callable[[bytes], Any]:
    """The codec's decoder for a type tag, looked up once per tag and site."""
    decoders = site._decoders
    decoder = decoders.get(tag)
    if decoder is None:
        decoder = decoders[tag] = site.codec.decoder(tag)
    return decoder


def reject(tier: GuardedTier, error: Exception) -> None:
    """Count (and log) an entry that failed verification or decoding: it is a miss."""
    tier.counters.integrity_failures += 1
    log.warning("llmcache: ignoring an entry in %s: %s", tier.name, error)


def serve(site: CallSite, found: Found, namespace: Namespace) -> Any:
    """Hand out a found entry's value: counted, in the ledger and in `llmcache.info`."""
    record, tier, value = found
    if value is NOT_SHARED:
        value = record.shared
        if value is NOT_SHARED:
            assert record.decoder is not None
            value = record.decoder(record.value_json)
    if tier == "memory":
        site.counters.memory_hits += 1
    else:
        site.counters.lower_hits += 1
    name = namespace.name
    site.cache.ledger.hit(name, record)
    remember(value, record, tier, True, name)
    observer = OBSERVER[0]
    if observer is not None:
        observer.served(site, record, tier, name)
    return value


def follow(site: CallSite, record: Record | None, value: Any, namespace: Namespace) -> Any:
    """What a caller that waited for another's real call gets: its own copy.

    Without a record (the result was not stored), the leader's value itself.
    """
    if record is None:
        remember(value, None, None, False, namespace.name)  # never a stale description
        observer = OBSERVER[0]
        if observer is not None:
            observer.served(site, None, "single-flight", namespace.name)
        return value
    result = serve(site, (record, "single-flight", NOT_SHARED), namespace)
    site.counters.lower_hits -= 1  # counted as coalesced, not as a tier hit
    return result


def just_finished(
    site: CallSite, fingerprint: int, namespace: Namespace, opts: Options | None
) -> tuple[Any, Record] | None:
    """A result an identical call stored between our lookup and our taking the lead.

    Without this second look, a caller that missed just before another's flight ended
    would find no flight to join and make a second real call.
    """
    memory = site.cache.memory
    if memory is None or (opts is not None and opts.refresh):
        return None
    record = memory.lookup(fingerprint)
    if record is None or not fresh(record, opts, site.cache.clock()):
        return None
    site.counters.coalesced += 1
    return follow(site, record, None, namespace), record


# -- a real call's result -----------------------------------------------------------------------
def meta_of(
    site: CallSite,
    value: Any,
    latency_s: float,
    given: Mapping[str, Any] | None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """The ledger's metadata of a real call: its usage and cost, and how long it took.

    An adapter that records a call itself (`CallSite.put`) may state its `usage` (priced
    like a `usage_of` answer) and/or `given` fields (which win); without either, the usage
    is read off `value` (the site's ``usage=`` hook, else the provider adapters).
    """
    try:
        if usage is not None:
            meta = usage_fields(usage, site.provider)
            meta.update(given or {})
        elif given is not None:
            meta = dict(given)
        else:
            meta = usage_meta(value, site.usage, site.provider)
    except Exception as error:  # a broken usage hook must not fail the call
        log.warning("llmcache: usage hook of %s failed: %r", site.identity, error)
        meta = {}
    meta["latency_s"] = latency_s
    return meta


def count_miss(site: CallSite, namespace: Namespace, meta: Mapping[str, Any]) -> None:
    site.counters.misses += 1
    site.cache.ledger.miss(namespace.name, meta)


def record_miss(
    site: CallSite,
    fingerprint: int,
    namespace: Namespace,
    prefix: str,
    value: Any,
    meta: dict[str, Any],
    opts: Options | None,
    store: bool,
) -> Record | None:
    """Count a real call and keep its result in memory (the flow writes the tiers below).

    `store=False`: the result reaches the caller but not the cache (e.g. an unfinished
    response); so does one under `options(no_store=True)`.
    """
    count_miss(site, namespace, meta)
    record = None
    if store and (opts is None or not opts.no_store):
        record = encode(site, fingerprint, prefix, value, meta, opts)
    if record is not None:
        write_memory(site, fingerprint, record)
    remember(value, record, None, False, namespace.name)
    return record


def encode(
    site: CallSite,
    fingerprint: int,
    prefix: str,
    value: Any,
    meta: dict[str, Any],
    opts: Options | None,
) -> Record | None:
    """The record of a result, or None (counted, warned once) if it cannot be stored."""
    try:
        tag, value_json, immutable = site.codec.encode(value)
        decoder = site.codec.decoder(tag)
        if not immutable:
            # Decode once now, on the miss path, so that a hit never meets a value that
            # cannot be decoded (hits decode without a safety net, for speed).
            try:
                decoder(value_json)
            except Exception as error:
                raise Unstorable(f"the stored form does not decode back: {error}") from error
    except Unstorable as error:
        site.counters.unstorable += 1
        if not site._warned_unstorable:
            site._warned_unstorable = True
            log.warning(
                "llmcache: %s returned a value that is not cached: %s", site.identity, error
            )
        return None
    ttl = (opts.ttl if opts is not None else None) or site.ttl or site.cache.ttl
    now = site.cache.clock()
    record = Record(
        value_json,
        tag,
        meta,
        now,
        NO_EXPIRY if ttl is None else now + ttl,
        site.cache._keys.signed_key(prefix, fingerprint),
        # A str that hits hand out is the cache's own copy, never the object the function
        # returned (maybe an interned literal that unrelated code holds too), so
        # `llmcache.info` can never take someone else's "yes" for this call's result.
        (decoder(value_json) if type(value) is str else value) if immutable else NOT_SHARED,
    )
    record.decoder = decoder
    return record


def write_memory(site: CallSite, fingerprint: int, record: Record) -> None:
    memory = site.cache.memory
    if memory is None:
        return
    try:
        stored = memory.store(fingerprint, record)
    except Exception as error:  # a cache problem must never fail the caller's call
        log.warning("llmcache: the memory tier did not take an entry: %r", error)
        return
    if stored:
        site.counters.memory_writes += 1


def entry_bytes(site: CallSite, record: Record) -> bytes:
    """The encrypted bytes the tiers below memory store for `record`."""
    return encode_entry(record, site.cache._entry_aead, site.cache.compress_above)


def ttl_of(site: CallSite, record: Record) -> float | None:
    """Seconds a tier should keep `record` (None: no expiry)."""
    left = record.ttl_left(site.cache.clock())
    return None if left is None else max(left, 0.001)
