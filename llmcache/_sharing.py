"""Sharing a cache: export a namespace to a bundle file, import a bundle into a workspace.

Export gathers the namespace's live entries (its current generation, unexpired) from every
tier, the memory tier included, one copy of each request; each with its type tag, timing and
metadata (usage, cost, the call's site and request digest), then the rows of the ledger for
that namespace; and seals them for the bundle key (`_bundle`). Entries recorded before
entries carried their request's digest cannot be matched in another workspace: they are left
out, and counted. Nothing of the exporting workspace's secret goes into the bundle.

Import reads the whole bundle once to check it (the key, every chunk, the counts) before
writing anything, then again to write each entry, sealed under the importing workspace's own
secret, under its portable key (`_imported`) in the tiers chosen. Writing the same bundle
twice writes the same keys: importing is idempotent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._backend import Backend
from ._bundle import (
    ENTRY,
    LEDGER,
    BundleError,
    BundleReader,
    BundleWriter,
    Entry,
    format_key,
    new_key,
    parse_key,
)
from ._errors import ConfigError
from ._imported import ImportedCheck, PortableNames
from ._keys import check_name
from ._record import NO_EXPIRY, IntegrityError, Record, decode_entry, encode_entry

if TYPE_CHECKING:
    from ._cache import Cache
    from ._namespaces import Namespace

__all__ = [
    "ExportSummary",
    "ImportSummary",
    "export_bundle",
    "export_namespace",
    "import_bundle",
    "import_into",
]

_READ_BATCH = 64  # keys read per get_many while exporting a tier (bounded: values)


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    """What `export_bundle` wrote.

    `key` is the bundle key in its text form: whoever imports the bundle needs it (it is
    not stored in the file). `without_digest`: entries recorded before entries carried their
    request's digest, left out (record them again to share them). `cost_usd`: what the
    exported entries cost to make, where known.
    """

    path: Path
    key: str
    namespace: str
    entries: int
    without_digest: int
    ledger_rows: int
    bytes: int
    cost_usd: float


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What `import_bundle` wrote: `entries` into each of `tiers` (`expired`: entries whose
    time to live had run out, not written), from the bundle of `exported_from`'s namespace
    `source_namespace`; `cost_usd` is what they cost their exporter to make, and `ledger`
    the exporter's ledger rows for the namespace (day, model, calls, spent...)."""

    path: Path
    namespace: str
    source_namespace: str
    exported_from: str
    exported_at: float
    entries: int
    expired: int
    tiers: tuple[str, ...]
    cost_usd: float
    ledger: tuple[dict[str, Any], ...]


# -- progress ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(shown: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A function that moves a progress bar (on stderr) to a position; a no-op when not
    `shown`. Without a total, it counts."""
    if not shown:
        yield lambda position: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), DownloadColumn()]
    else:
        columns += [TextColumn("{task.completed:,.0f} entries")]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda position: bar.update(task, completed=position)


# -- the public functions (the default cache's); `Cache.export_bundle` / `import_bundle` --------
def export_bundle(
    path: str | os.PathLike[str],
    namespace: str | None = None,
    *,
    key: str | bytes | None = None,
    cache: Cache | None = None,
    progress: bool = False,
) -> ExportSummary:
    """Export `namespace` of `cache` (default: the default cache) to the bundle file `path`.

    Writes its live entries from every tier, with their metadata and the namespace's ledger
    rows, sealed for the bundle key: `key` (the text `llmcache export` prints), else a new
    random one, returned as the summary's `key`. Give it to whoever imports the bundle.
    """
    from ._config import get_default_cache

    return export_namespace(cache or get_default_cache(), path, namespace, key, progress)


def import_bundle(
    path: str | os.PathLike[str],
    key: str | bytes,
    *,
    tier: str | None = None,
    namespace: str | None = None,
    cache: Cache | None = None,
    progress: bool = False,
) -> ImportSummary:
    """Import the bundle file `path`, opened with `key`, into `cache` (default: the default
    cache): checked whole first (a wrong key, a damaged, altered or truncated file is a
    `BundleError` and imports nothing), then written under this workspace's secret into
    `tier` (default: every tier below memory), in `namespace` (default: the bundle's).
    Calls of the imported requests are then hits. Importing again is idempotent.
    """
    from ._config import get_default_cache

    return import_into(cache or get_default_cache(), path, key, tier, namespace, progress)


# -- export --------------------------------------------------------------------------------------
def export_namespace(
    cache: Cache,
    path: str | os.PathLike[str],
    namespace: str | None = None,
    key: str | bytes | None = None,
    progress: bool = False,
) -> ExportSummary:
    """Write `namespace`'s live entries (default: the cache's default namespace) to `path`,
    sealed for `key` (default: a new random key, returned in the summary)."""
    name = check_name("namespace", namespace or cache.default_namespace)
    raw_key = new_key() if key is None else parse_key(key)
    target = Path(path)
    _check_tiers([t.backend for t in cache._tiers], scanning=True)
    from . import __version__

    manifest = {
        "namespace": name,
        "workspace": cache.workspace,
        "exported_at": cache.clock(),
        "llmcache": __version__,
    }
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "wb") as out, _progress(progress, "exporting", None) as moved:
            writer = BundleWriter(out, raw_key, manifest)
            gathered = _Gathered(cache, name, writer, moved)
            for record in cache.memory.records() if cache.memory is not None else ():
                gathered.consider(record)
            for tier in cache._tiers:
                gathered.walk(tier.backend)
            for row in _ledger_rows(cache, name):
                writer.add_ledger_row(row)
            writer.finish({"without_digest": gathered.without_digest})
        os.replace(partial, target)  # never a half-written bundle under the name asked for
    except OSError as error:
        raise ConfigError(f"could not write the bundle {str(target)!r}: {error}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return ExportSummary(
        path=target,
        key=format_key(raw_key),
        namespace=name,
        entries=writer.entries,
        without_digest=gathered.without_digest,
        ledger_rows=writer.ledger_rows,
        bytes=writer.written,
        cost_usd=gathered.cost_usd,
    )


class _Gathered:
    """The entries of one namespace an export has written so far (one copy per request)."""

    def __init__(
        self, cache: Cache, name: str, writer: BundleWriter, moved: Callable[[int], None]
    ) -> None:
        self.cache = cache
        self.name = name
        self.writer = writer
        self.moved = moved
        self.prefix = f"{cache._keys.workspace_prefix()}{name}:"
        self.now = cache.clock()
        self.without_digest = 0
        self.cost_usd = 0.0
        # The requests written so far (an entry may be in several tiers, and an imported one
        # under its call's own key too), by the first 128 bits of their digest: about 70
        # bytes per entry, the one thing an export keeps that grows with the namespace.
        self._digests: set[int] = set()
        self._digestless: set[str] = set()  # entries of an older llmcache (rare), by key
        self._scopes = _Scopes(cache, name)
        # What the namespace's own records (workspace, namespace) are now: an entry without
        # a digest is counted only if it is of the current generation as far as they say.
        self._current = self._scopes.get(None).generation.split("-")[0]

    def walk(self, backend: Backend) -> None:
        batch: list[str] = []
        try:
            for key in backend.scan(self.prefix):
                if not key.endswith(":lock"):
                    batch.append(key)
                if len(batch) >= _READ_BATCH:
                    self._read(backend, batch)
                    batch = []
            self._read(backend, batch)
        except (ConfigError, BundleError):
            raise
        except Exception as error:
            raise ConfigError(
                f"could not read tier {backend.name} while exporting ({error!r}); nothing "
                f"was written: check the tier (llmcache doctor) and export again"
            ) from error

    def _read(self, backend: Backend, keys: list[str]) -> None:
        if not keys:
            return
        aead = self.cache._entry_aead
        for key, data in zip(keys, backend.get_many(keys), strict=True):
            if data is None:
                continue
            try:
                record = decode_entry(data, key, aead)
            except IntegrityError:
                continue  # not an entry (a record of another kind), or not one of ours
            self.consider(record)

    def consider(self, record: Record) -> None:
        key = record.signed_key
        if not key.startswith(self.prefix):
            return
        if record.expires != NO_EXPIRY and record.expires <= self.now:
            return
        meta = record.meta
        call = meta.get("call")
        site = call.get("site") if isinstance(call, dict) else None
        digest = call.get("digest") if isinstance(call, dict) else None
        if not isinstance(site, str) or not isinstance(digest, str):
            label = key[len(self.prefix) :].split(":", 1)[0]
            current = ".".join(label.split("-")[0].split(".")[:2]) == self._current
            if current and key not in self._digestless:
                self._digestless.add(key)
                self.without_digest += 1
            return
        try:
            seen = int(digest[:32], 16)
        except ValueError:
            return  # not a digest llmcache wrote
        if not key.startswith(self._scopes.get(site).state[1]) or seen in self._digests:
            return  # of an older generation, or written already
        self._digests.add(seen)
        exported = dict(meta)
        exported["call"] = {"site": site, "digest": digest}  # keyed argument hashes: useless
        cost = meta.get("cost_usd")
        if isinstance(cost, int | float) and math.isfinite(cost):
            self.cost_usd += float(cost)
        expires = None if record.expires == NO_EXPIRY else record.expires
        entry = Entry(
            site, digest, record.tag, record.created, expires, exported, record.value_json
        )
        self.writer.add_entry(entry)
        self.moved(self.writer.entries)


class _Scopes:
    """Each call site's scope in one namespace, loaded (its current generation known)."""

    def __init__(self, cache: Cache, name: str) -> None:
        self.cache = cache
        self.name = name
        self._loaded: dict[str | None, Namespace] = {}

    def get(self, site: str | None) -> Namespace:
        scope = self._loaded.get(site)
        if scope is None:
            scope = self._loaded[site] = self.cache.load(self.cache.namespace(self.name, site))
        return scope


def _ledger_rows(cache: Cache, name: str) -> list[dict[str, Any]]:
    cache.flush()
    ledger = cache.ledger
    days = ledger.recorded_days(cache.read_counters)
    return [row for row in ledger.rows(cache.read_counters, days) if row["namespace"] == name]


def _check_tiers(backends: list[Backend], scanning: bool = False) -> None:
    """Every tier answers (and, for an export, can list its keys): else a clear error now,
    before anything is written."""
    for backend in backends:
        try:
            backend.ping()
        except Exception as error:
            raise ConfigError(
                f"tier {backend.name} is unusable ({error!r}); nothing was done: check it "
                f"(llmcache doctor) and try again"
            ) from None
        if scanning and type(backend).scan is Backend.scan:
            raise ConfigError(
                f"tier {backend.name} cannot list its keys ({type(backend).__name__} has no "
                f"scan method), so its entries cannot be exported"
            )


# -- import --------------------------------------------------------------------------------------
def import_into(
    cache: Cache,
    path: str | os.PathLike[str],
    key: str | bytes,
    tier: str | None = None,
    namespace: str | None = None,
    progress: bool = False,
) -> ImportSummary:
    """Check the bundle at `path` whole, then write its entries into `cache`'s workspace
    (re-sealed under its secret) in the tier named `tier` (default: every tier below
    memory, or the memory tier if there is none), in `namespace` (default: the bundle's)."""
    raw_key = parse_key(key)
    source = Path(path)
    targets = _targets(cache, tier)
    try:
        size = source.stat().st_size
    except OSError as error:
        raise ConfigError(f"cannot read the bundle {str(source)!r}: {error}") from None
    # First pass: read it all, writing nothing; any fault is found here.
    with _open_bundle(source, raw_key) as reader, _progress(progress, "checking", size) as moved:
        manifest = reader.manifest
        ledger: list[dict[str, Any]] = []
        cost = 0.0
        for kind, item in reader.items():
            if kind == LEDGER:
                ledger.append(item)
            elif kind == ENTRY:
                spent = item.meta.get("cost_usd")
                if isinstance(spent, int | float) and math.isfinite(spent):
                    cost += float(spent)
            moved(reader.position)
    source_namespace = str(manifest.get("namespace"))
    try:
        name = check_name("namespace", namespace or source_namespace)
    except ConfigError:
        raise BundleError(
            f"{source} names namespace {source_namespace!r}, which is not a valid namespace "
            f"name: pass one to import into (--namespace)"
        ) from None
    _check_tiers(targets)
    names = PortableNames(cache._keys)
    # Marked first, so entries are looked for as soon as they land (a mark with no entry
    # costs a look-up per miss, an entry with no mark would never be found).
    if not cache._write_counters(names.marker, {names.field(name): 1.0}):
        raise ConfigError(
            f"could not mark namespace {name!r} as imported in the shared tier: nothing was "
            f"imported; check the tier (llmcache doctor) and try again"
        )
    for check in cache._gate.checks:
        if isinstance(check, ImportedCheck):
            check.mark(name)
    scopes = _Scopes(cache, name)
    counts = _Counts()
    try:
        with (
            _open_bundle(source, raw_key) as reader,
            _progress(progress, "importing", size) as moved,
        ):
            for kind, item in reader.items():
                if kind == ENTRY:
                    _write(cache, targets, names, scopes, item, counts)
                    moved(reader.position)
    except BundleError:
        # It read whole a moment ago: the file was changed (or replaced) since.
        raise BundleError(
            f"{source} changed while it was being imported, after {counts.written} entries "
            f"were written: import it again once it is complete (importing is idempotent)"
        ) from None
    written, expired = counts.written, counts.expired
    return ImportSummary(
        path=source,
        namespace=name,
        source_namespace=source_namespace,
        exported_from=str(manifest.get("workspace")),
        exported_at=float(manifest.get("exported_at") or 0.0),
        entries=written,
        expired=expired,
        tiers=tuple(backend.name for backend in targets),
        cost_usd=cost,
        ledger=tuple(ledger),
    )


class _Counts:
    """What an import has written so far, and left out as expired."""

    __slots__ = ("expired", "written")

    def __init__(self) -> None:
        self.written = self.expired = 0


def _write(
    cache: Cache,
    targets: list[Backend],
    names: PortableNames,
    scopes: _Scopes,
    item: Entry,
    counts: _Counts,
) -> None:
    """Write one entry, sealed under `cache`'s secret, under its portable key in `targets`."""
    now = cache.clock()
    if item.expires is not None and item.expires <= now:
        counts.expired += 1
        return
    portable = names.key(scopes.get(item.site).state[1], item.digest)
    expires = NO_EXPIRY if item.expires is None else item.expires
    record = Record(item.value_json, item.tag, dict(item.meta), item.created, expires, portable)
    data = encode_entry(record, cache._entry_aead, cache.compress_above)
    ttl = None if item.expires is None else item.expires - now
    for backend in targets:
        try:
            backend.set(portable, data, ttl)
        except Exception as error:
            raise ConfigError(
                f"tier {backend.name} failed while importing ({error!r}) after "
                f"{counts.written} entries; importing again is safe (it is idempotent)"
            ) from None
    counts.written += 1


@contextlib.contextmanager
def _open_bundle(source: Path, key: bytes) -> Iterator[BundleReader]:
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed below, after the reader's use
    except OSError as error:
        raise ConfigError(f"cannot read the bundle {str(source)!r}: {error}") from None
    with handle:
        yield BundleReader(handle, key, str(source))


def _targets(cache: Cache, tier: str | None) -> list[Backend]:
    """The backends an import writes to (see `import_bundle`)."""
    lower = [t.backend for t in cache._tiers]
    every = [*([cache.memory] if cache.memory is not None else []), *lower]
    if tier is None:
        return lower or every
    wanted = tier.strip()
    chosen = [b for b in every if b.name == wanted]
    if not chosen and "://" not in wanted:  # a scheme alone: "disk", "redis", "memory"
        chosen = [b for b in every if urlsplit(b.name).scheme == wanted]
    if not chosen:  # a URL with other options or credentials: the same place
        chosen = [b for b in every if _place(b.name) == _place(wanted)]
    if len(chosen) != 1:
        names = ", ".join(b.name for b in every)
        raise ConfigError(
            f"tier {tier!r} is {'ambiguous' if chosen else 'not one of this cache'}'s tiers "
            f"({names}): name one of them (its URL, or its scheme, e.g. 'disk')"
        )
    return chosen


def _place(url: str) -> tuple[str, str | None, int | None, str]:
    """Where a tier URL points (scheme, host, port, path), whatever its options say."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")
