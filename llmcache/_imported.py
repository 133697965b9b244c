"""Imported entries: where `import_bundle` puts them, and the check that serves them.

An entry's key is derived from its workspace's secret, so a workspace that imports a bundle
cannot compute the key the entry will be asked for under: it knows the request only by its
digest (SHA-256 of the canonical request, the same in every workspace; see
`PendingCall.digest`). So an imported entry is stored under a *portable key*, named from the
importing workspace's key prefix of the call's scope (scope, namespace, generation) and a
keyed hash of that digest; and `ImportedCheck`, on a miss (before the real call is made, and
before replay mode refuses it), looks that key up. Found, the entry is copied under the
call's own key in every tier, so the next identical call is an ordinary hit, and served as a
hit (`Substitute`). A new generation (`invalidate`, `cache_clear`, `clear`) makes imported
entries unreachable like any other, since the portable key carries it.

A miss pays for the look-up only in a namespace something was imported into: imports mark
their namespace in a counter record of the shared (or persistent) tier, which each cache
re-reads at most every `MARKER_REFRESH_S` seconds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._backend import run_in_thread
from ._codec import Unstorable
from ._gate import Substitute
from ._record import NOT_SHARED, IntegrityError, Record, decode_entry, encode_entry
from ._steps import IMMUTABLE, decoder_for, fresh, ttl_of, write_memory

if TYPE_CHECKING:
    from ._cache import Cache
    from ._gate import PendingCall
    from ._keys import KeySchedule
    from ._steps import Found

__all__ = ["MARKER_REFRESH_S", "ImportedCheck", "PortableNames"]

#: How often a cache re-reads which namespaces hold imported entries (another process's
#: import is served here within this long; one made in this process, at once).
MARKER_REFRESH_S = 5.0
_monotonic = time.monotonic  # a name of this module's, so tests can move it


class PortableNames:
    """The portable keys and the import marker of one workspace (and secret)."""

    __slots__ = ("_fields", "_hasher", "marker")

    def __init__(self, keys: KeySchedule) -> None:
        # A subkey of its own (a keyed BLAKE2b of the entry key): a portable name says
        # nothing of the digest to whoever reads the shared tier without the secret.
        subkey = hashlib.blake2b(key=keys.entry_key, person=b"llmc-portable").digest()
        self._hasher = hashlib.blake2b(key=subkey, digest_size=16)
        #: The counter record whose fields name the namespaces entries were imported into.
        self.marker = f"llmc-imports:{keys.scope}"
        self._fields: dict[str, str] = {}

    def field(self, namespace: str) -> str:
        """The marker's field for `namespace`: a keyed hash, as the ledger keeps namespace
        names from whoever reads the shared tier without the secret."""
        field = self._fields.get(namespace)
        if field is None:
            hasher = self._hasher.copy()
            hasher.update(b"\x00namespace:" + namespace.encode())
            field = self._fields[namespace] = hasher.hexdigest()
        return field

    def key(self, prefix: str, digest: str) -> str:
        """Where an entry of the call scope `prefix` with request `digest` is imported."""
        hasher = self._hasher.copy()
        hasher.update(digest.encode())
        return f"{prefix}imp-{hasher.hexdigest()}"


class ImportedCheck:
    """Serves a miss from an imported entry (see the module's docstring)."""

    __slots__ = ("_marked", "_read_at", "cache", "names")

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.names = PortableNames(cache._keys)
        self._marked: frozenset[str] = frozenset()
        self._read_at = -math.inf

    def mark(self, namespace: str) -> None:
        """This process imported into `namespace`: look there from now on."""
        self._marked = self._marked | {self.names.field(namespace)}

    def _stale(self) -> bool:
        now = _monotonic()
        if now - self._read_at < MARKER_REFRESH_S:
            return False
        self._read_at = now
        return True

    def _remember(self, counters: Mapping[str, float]) -> None:
        self._marked = self._marked | {name for name, count in counters.items() if count > 0}

    def _wanted(self, call: PendingCall) -> str | None:
        """The portable key to look up for `call`, or None when there is nothing to look for
        (nothing imported into its namespace, a refresh, no digest)."""
        opts = call.opts
        if (opts is not None and opts.refresh) or not self._marked:
            return None
        if self.names.field(call.namespace.name) not in self._marked:
            return None
        digest = call.digest
        return None if digest is None else self.names.key(call.prefix, digest)

    # -- the MissCheck protocol -------------------------------------------------------------
    def enter(self, call: PendingCall) -> Substitute | None:
        if self._stale():
            self._remember(self.cache.read_counters(self.names.marker))
        portable = self._wanted(call)
        if portable is None:
            return None
        cache = self.cache
        if cache.memory is not None:  # a cache without a lower tier imports into memory
            found = self._adopt(call, portable, cache.memory.get(portable), "memory")
            if found is not None:
                return found
        for tier in cache._tiers:
            found = self._adopt(call, portable, tier.get(portable), tier.name)
            if found is not None:
                tier.counters.hits += 1
                record, data = found.found[0], self._sealed(found)
                for other in cache._tiers:
                    other.set(record.signed_key, data, ttl_of(call.site, record))
                return found
        return None

    async def aenter(self, call: PendingCall) -> Substitute | None:
        if self._stale():
            self._remember(await run_in_thread(self.cache.read_counters, self.names.marker))
        portable = self._wanted(call)
        if portable is None:
            return None
        cache = self.cache
        if cache.memory is not None:
            found = self._adopt(call, portable, cache.memory.get(portable), "memory")
            if found is not None:
                return found
        for tier in cache._tiers:
            found = self._adopt(call, portable, await tier.aget(portable), tier.name)
            if found is not None:
                tier.counters.hits += 1
                record, data = found.found[0], self._sealed(found)
                for other in cache._tiers:
                    await other.aset(record.signed_key, data, ttl_of(call.site, record))
                return found
        return None

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        """Nothing to settle: a look-up holds nothing."""

    # -- an imported entry, made the call's own ---------------------------------------------
    def _adopt(
        self, call: PendingCall, portable: str, data: bytes | None, tier: str
    ) -> Substitute | None:
        """The entry under `portable`, re-keyed under the call's own key (and kept in the
        memory tier), as a substitute to serve; None if absent, stale or unreadable."""
        if not isinstance(data, bytes):
            return None
        cache, site = self.cache, call.site
        try:
            imported = decode_entry(data, portable, cache._entry_aead)
            decoder = decoder_for(site, imported.tag)
            value = decoder(imported.value_json)
        except (IntegrityError, Unstorable, ValueError):
            return None  # not ours, or a type this process does not know: make the call
        if not fresh(imported, call.opts, cache.clock()):
            return None
        record = Record(
            imported.value_json,
            imported.tag,
            imported.meta,
            imported.created,
            imported.expires,
            cache._keys.signed_key(call.prefix, call.fingerprint),
            value if type(value) in IMMUTABLE else NOT_SHARED,
        )
        record.decoder = decoder
        write_memory(site, call.fingerprint, record)
        found: Found = (record, tier, record.shared)
        return Substitute(found, "imported")

    def _sealed(self, substitute: Substitute) -> bytes:
        record = substitute.found[0]
        return encode_entry(record, self.cache._entry_aead, self.cache.compress_above)
