"""The embedded disk tier: one SQLite file, safe for several processes, bounded in size.

Why SQLite (stdlib) rather than diskcache: diskcache unpickles any row whose mode column says
"pickle", so whoever can write the cache file could make us unpickle their bytes, and our
threat model says nothing read from a tier is ever unpickled. SQLite in WAL mode gives
concurrent readers, one writer at a time across processes, crash safety and survival across
kernel restarts, with no dependency.

Size is tracked by triggers in a one-row table, so checking the bound costs one read; when the
file holds more than `max_bytes` of values, the least recently used entries are evicted (reads
record their access in memory and flush it with the next write, so a hit never writes).
Records under ``llmc-meta:`` keys (generations and other bookkeeping) are never evicted.

Faults, none of which may stall or break a cached call:

* Whoever can write the file can put any SQLite type in any column: values are read as
  ``CAST(... AS BLOB)``, so a number or text is bytes that fail verification (an integrity
  miss), never a ``TypeError``.
* Another connection holding the write lock makes our writes wait `write_timeout` (50 ms),
  not seconds; reads never wait for writers (WAL).
* A deleted or replaced file is noticed on the next write (its device and inode are compared
  with the open file's, one ``stat`` per write) or generation poll (``get_many``, at most one
  ``stat`` per `_READ_CHECK_INTERVAL`), never by ``get``, and reopened.
* A full disk raises SQLite's own "database or disk is full", not the "cannot rollback" of a
  transaction SQLite already rolled back.
* After ``os.fork()`` the child opens its own connections: SQLite connections must not be
  used across a fork, so the inherited ones are set aside, never used nor closed.

Entries and locks expire by the tier's `clock` (wall-clock seconds, `time.time` unless a
cache built with ``clock=`` set another), which also stamps their access times.

Connections are per thread, and closed only when no thread can be inside one (by its own
thread, once its thread has ended, or by the garbage collector once unused): closing a
connection while another thread runs a statement on it crashes CPython.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._backend import Backend
from ._errors import ConfigError
from ._memory import parse_size

__all__ = ["DiskTier", "default_directory"]

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_WRITE_TIMEOUT = 0.05
_FILE_NAME = "cache.sqlite3"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL, size INTEGER NOT NULL,
    accessed REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL, field TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (key, field));
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER);
INSERT OR IGNORE INTO totals VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_add AFTER INSERT ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_change AFTER UPDATE OF size ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_remove AFTER DELETE ON entries
    BEGIN UPDATE totals SET bytes = bytes - OLD.size WHERE id = 0; END;
"""
_UPSERT = (
    "INSERT INTO entries (key, value, expires, size, accessed) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, "
    "size = excluded.size, accessed = excluded.accessed"
)
# CASTs: the file is not trusted to hold the types we wrote (see the module docstring).
_SELECT = "SELECT CAST(value AS BLOB), CAST(expires AS REAL) FROM entries WHERE key = ?"
_TOTAL = "SELECT CAST(bytes AS INTEGER) FROM totals WHERE id = 0"
_COMPANIONS = ("-wal", "-shm")
_SCAN_PAGE = 500  # keys per query of `scan`
# Entries the byte bound may evict: all but the meta records (a range test on the key).
_EVICTABLE = "NOT (key >= 'llmc-meta:' AND key < 'llmc-meta;')"
# How often a read that polls (get_many: generations) may stat the file to notice that it was
# deleted or replaced: well under the generation poll, so every poll checks.
_READ_CHECK_INTERVAL = 0.25
# Connections inherited across fork() (held through their reader cursors, which hold them and
# which the cursors' own cleanup would reset): never used (SQLite forbids it) and never closed
# (closing could release or checkpoint what the parent still uses). Kept so GC leaves them be.
_INHERITED: list[sqlite3.Cursor] = []
# The same, taken just before fork(): the child frees the other threads' thread-locals
# before its at-fork hooks run, and their connections must not be closed there either.
_FORKING: list[sqlite3.Cursor] = []
_OPEN_TIERS: weakref.WeakSet[DiskTier] = weakref.WeakSet()


def default_directory() -> Path:
    """LLMCACHE_DIR, else the platform's per-user cache folder."""
    configured = os.environ.get("LLMCACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmcache", appauthor=False))


def _prefix_upper_bound(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Processes take turns to create the file (two making one new file at once could get
    "database is locked" switching it to WAL), and to clean up and reopen a replaced one
    (so none removes a WAL that another has just made for the new file)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, and no inode numbers to compare
        yield
        return
    with open(f"{path}.reopen-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; on failure, roll back only if SQLite has not already.

    SQLite rolls back by itself after some errors (SQLITE_FULL among them); a second ROLLBACK
    would raise "cannot rollback - no transaction is active" and hide the real error.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def _explain(path: Path, error: BaseException) -> str:
    """What is wrong with the disk cache's folder or file, and how to fix it, in one line."""
    hint = "set LLMCACHE_DIR or use disk:///some/writable/path"
    if path.is_dir():
        return f"{path} is a directory where the cache's SQLite file belongs: remove it, or {hint}"
    if isinstance(error, OSError):
        return f"cannot create the disk cache folder {path.parent}: {error}; {hint}"
    text = str(error)
    if "not a database" in text:
        return f"{path} is not an SQLite database (another program's file?): delete it, or {hint}"
    if "readonly" in text or "unable to open" in text:
        return (
            f"cannot write the disk cache file {path} ({text}): its folder must be writable "
            f"by this user (SQLite keeps -wal and -shm files beside it); {hint}"
        )
    return f"cannot open the disk cache file {path}: {text}; {hint}"


class DiskTier(Backend):
    """SQLite-backed tier under `directory` (default: `default_directory()`).

    Args:
        max_bytes: bound on the stored values' bytes; least recently used entries go first.
        timeout: how long opening the file may wait for another process's lock (seconds).
        write_timeout: how long a write waits for another connection's write lock before it
            fails (the core queues it): a busy file must not stall cached calls.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        max_bytes: int | str = DEFAULT_MAX_BYTES,
        timeout: float = 2.0,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        self.directory = Path(directory) if directory else default_directory()
        self.max_bytes = parse_size(max_bytes, "max_bytes")
        self.timeout = float(timeout)
        self.write_timeout = float(write_timeout)
        if not self.write_timeout >= 0:
            raise ConfigError("write_timeout must be a number of seconds >= 0")
        self.path = self.directory / _FILE_NAME
        self.name = f"disk://{self.path}"
        self._local = threading.local()
        # Every thread's reader cursor (each holds its connection) and that thread, weakly: a
        # connection goes when its thread does. For close() and fork() (`_before_fork`).
        self._owners: weakref.WeakKeyDictionary[sqlite3.Cursor, threading.Thread] = (
            weakref.WeakKeyDictionary()
        )
        self._reopen_mutex = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._companions: dict[str, tuple[int, int] | None] = {}
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._writes_since_check = 0
        self._read_checked_at = time.monotonic()
        try:
            self._start()
        except (OSError, sqlite3.Error) as error:
            self.close()
            raise ConfigError(_explain(self.path, error)) from error
        _OPEN_TIERS.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DiskTier:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"max_bytes", "timeout", "write_timeout"}
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} in {url!r}; disk accepts max_bytes, "
                f"timeout and write_timeout"
            )
        directory = unquote(parts.netloc + parts.path) or None
        merged: dict[str, Any] = {**query, **options}
        for name in ("timeout", "write_timeout"):
            if name in merged:
                try:
                    merged[name] = float(merged[name])
                except ValueError:
                    raise ConfigError(
                        f"{name}={merged[name]!r} in {url!r} is not a number of seconds"
                    ) from None
        return cls(directory, **merged)

    # -- connections ---------------------------------------------------------------------------
    # Each thread has a connection of its own (sqlite3 objects are not shared), opened at its
    # first call. Opening, reopening and forgetting them happen under `_reopen_mutex`.
    def _start(self, reopening: bool = False) -> sqlite3.Cursor:
        """Create the folder and the file (with its schema) if needed; note which file it is.

        The only place that may create the file: the others open it only if it exists.
        `reopening`: the file we had open was deleted or replaced, so its leftovers go first.
        Returns this thread's reader cursor, on the connection it opened.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.path):
            if reopening:
                self._remove_stale_companions()
            connection = self._open(create=True)
            self._identity = _file_identity(self.path)
            # The WAL and its index keep their inode while any connection is open (SQLite
            # deletes them only when the last one closes): these identify *this* database's.
            self._companions = {s: _file_identity(Path(f"{self.path}{s}")) for s in _COMPANIONS}
        return self._adopt(connection)

    def _open(self, create: bool = False) -> sqlite3.Connection:
        # Without `create`, a missing file is an error rather than a new empty file: that new
        # file would take the deleted one's -wal for its own (see _remove_stale_companions).
        target = self.path if create else f"{self.path.absolute().as_uri()}?mode=rw"
        # Opening may have to wait out another process creating the file (`timeout`); after
        # that, every statement waits at most `write_timeout` for a lock.
        connection = sqlite3.connect(
            target,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=not create,
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version != _SCHEMA_VERSION:  # a new file (or an older schema): one write
                connection.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;"
                )
            connection.execute(f"PRAGMA busy_timeout = {int(self.write_timeout * 1000)}")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            connection.close()
            raise
        return connection

    def _adopt(self, connection: sqlite3.Connection) -> sqlite3.Cursor:
        """Make `connection` this thread's; its reader cursor."""
        local = self._local
        local.connection = connection
        # A cursor kept for reads: re-executing one cursor is cheaper than a new one.
        local.reader = reader = connection.cursor()
        self._owners[reader] = threading.current_thread()
        return reader

    def _forget_connections(self) -> None:
        """Drop our references to every thread's connection, closing none of them.

        Every thread opens a new connection at its next call. The old ones are not closed
        here: another thread may be inside one (closing it under that thread crashes the
        interpreter); each is closed once nothing uses it. That is safe even after
        the file was deleted: SQLite neither checkpoints nor removes the -wal of a database
        file that moved (a new file's WAL of the same name stays).
        """
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            return self._open_for_thread().connection
        return connection

    def _open_for_thread(self) -> sqlite3.Cursor:
        """A new connection for this thread (its reader cursor), to the file we have open.

        If that file was deleted or replaced, it is reopened first: a thread's first call
        must not open, or create, a file other than the one the tier checked.
        """
        with self._reopen_mutex:
            if self._identity is None or _file_identity(self.path) != self._identity:
                return self._reopen_now()
            return self._adopt(self._open())

    def _writer(self) -> sqlite3.Connection:
        """This thread's connection, reopened first if the file was deleted or replaced.

        One stat per write (a few microseconds beside a commit); `get` does not check, so a
        process that only reads notices at its next write or generation poll (`_poller`).
        """
        identity = self._identity  # None: the last reopen failed, so try again
        if identity is None or _file_identity(self.path) != identity:
            with self._reopen_mutex:
                if self._identity is None or _file_identity(self.path) != self._identity:
                    return self._reopen_now().connection
                # else another thread has just reopened it
        return self._connection()

    def _poller(self) -> sqlite3.Connection:
        """`_writer` for the reads that poll (generations, counters), at most one stat per
        `_READ_CHECK_INTERVAL`: a process that only reads must still notice a replaced file
        (its generations would stay those of the deleted file), and the hit path never pays.
        """
        now = time.monotonic()
        if now - self._read_checked_at >= _READ_CHECK_INTERVAL or self._identity is None:
            self._read_checked_at = now
            return self._writer()
        return self._connection()

    def _reopen_now(self) -> sqlite3.Cursor:
        """Open the file now at our path (under `_reopen_mutex`); this thread's reader."""
        self._forget_connections()
        self._identity = None  # until the new file is open: every call tries again
        return self._start(reopening=True)  # it recreates the folder too, if that is gone

    def _remove_stale_companions(self) -> None:
        """Remove the -wal and -shm files of the database we had open, if still there.

        SQLite does not checkpoint a database file that was moved or deleted under it: it
        leaves the WAL behind, where a new file of the same name would take it for its own
        (old pages over the new file). Files another process made since, for the new
        database, have other inodes and stay.
        """
        for suffix, identity in self._companions.items():
            companion = Path(f"{self.path}{suffix}")
            if identity is not None and _file_identity(companion) == identity:
                with contextlib.suppress(FileNotFoundError):
                    companion.unlink()

    def _forget_inherited_connections(self) -> None:
        """In a forked child: set the parent's connections aside and start afresh."""
        _INHERITED.extend(self._owners)
        self._owners = weakref.WeakKeyDictionary()
        self._reopen_mutex = threading.Lock()
        self._touch_lock = threading.Lock()
        self._local = threading.local()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        try:
            reader: sqlite3.Cursor = self._local.reader
        except AttributeError:  # this thread's first read (or first since a reopen)
            reader = self._open_for_thread()
        row = reader.execute(_SELECT, (key,)).fetchone()
        if row is None:
            return None
        value, expires = row
        now = self.clock()  # read even without a TTL: it is the entry's access time
        if expires is not None and expires <= now:
            return None
        touched = self._touched
        if len(touched) < 10_000:
            touched[key] = now  # flushed as the access time with the next write
        return value  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self._poller().execute(
            f"SELECT key, CAST(value AS BLOB), CAST(expires AS REAL) FROM entries "
            f"WHERE key IN ({marks})",
            tuple(keys),
        )
        now = self.clock()
        found = {k: v for k, v, expires in rows if expires is None or expires > now}
        return [found.get(key) for key in keys]

    # -- writes ----------------------------------------------------------------------------------
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        now = self.clock()
        expires = None if ttl is None else now + ttl
        connection = self._writer()
        with self._touch_lock:
            touched, self._touched = self._touched, {}
        with _transaction(connection):
            connection.execute(_UPSERT, (key, value, expires, len(value), now))
            if touched:
                connection.executemany(
                    "UPDATE entries SET accessed = ? WHERE key = ?",
                    [(t, k) for k, t in touched.items()],
                )
        self._writes_since_check += 1
        if self._writes_since_check >= 32 or len(value) > self.max_bytes // 64:
            self._writes_since_check = 0
            try:
                self._enforce_bound(connection)
            except sqlite3.Error:
                # The entry is stored; eviction is retried with the next write.
                self._writes_since_check = 32

    def _enforce_bound(self, connection: sqlite3.Connection) -> None:
        (total,) = connection.execute(_TOTAL).fetchone()
        if total is None or total <= self.max_bytes:
            return
        now = self.clock()
        connection.execute("DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (now,))
        connection.execute("DELETE FROM locks WHERE expires <= ?", (now,))
        target = int(self.max_bytes * 0.9)
        while True:
            (total,) = connection.execute(_TOTAL).fetchone()
            if total <= target:
                return
            # Evict about as many of the least recently used entries as the excess needs
            # (by their average size), not a fixed batch that could empty a small cache.
            (count,) = connection.execute(
                f"SELECT count(*) FROM entries WHERE {_EVICTABLE}"
            ).fetchone()
            if count == 0:
                return  # only meta records left: they are kept whatever their size
            batch = max(1, min(256, -(-(total - target) * count // total)))
            connection.execute(
                "DELETE FROM entries WHERE key IN "
                f"(SELECT key FROM entries WHERE {_EVICTABLE} ORDER BY accessed LIMIT ?)",
                (batch,),
            )

    def delete(self, key: str) -> None:
        self._writer().execute("DELETE FROM entries WHERE key = ?", (key,))

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        cursor = self._writer().execute(
            "DELETE FROM entries WHERE key >= ? AND key < ?",
            (prefix, _prefix_upper_bound(prefix)),
        )
        return cursor.rowcount

    def scan(self, prefix: str) -> Iterator[str]:
        if not prefix:
            raise ValueError("scan needs a non-empty prefix")
        # Pages of keys in key order, each page its own query from the last key seen: no
        # cursor stays open across the caller's work (a writer may run meanwhile), and
        # memory is one page whatever the store's size. Expired entries are left out, as
        # `get` would not return them.
        low, high, after = prefix, _prefix_upper_bound(prefix), None
        while True:
            rows = (
                self._connection()
                .execute(
                    "SELECT key FROM entries WHERE key >= ? AND key < ? AND key > ? "
                    "AND (expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
                    (low, high, "" if after is None else after, self.clock(), _SCAN_PAGE),
                )
                .fetchall()
            )
            for (key,) in rows:
                yield key
            if len(rows) < _SCAN_PAGE:
                return
            after = rows[-1][0]

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        # Counters (the ledger, generations) are written off the call path, by the flusher or
        # by invalidate(): they may wait `timeout` for the lock rather than fail and retry.
        connection = self._writer()
        connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            with _transaction(connection):
                connection.executemany(
                    "INSERT INTO counters (key, field, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value",
                    [(key, field, delta) for field, delta in deltas.items()],
                )
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(self.write_timeout * 1000)}")

    def read_counters(self, key: str) -> dict[str, float]:
        rows = self._poller().execute("SELECT field, value FROM counters WHERE key = ?", (key,))
        return {field: value for field, value in rows}

    def try_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(8)
        now = self.clock()
        cursor = self._writer().execute(
            "INSERT INTO locks (key, token, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires = excluded.expires "
            "WHERE locks.expires <= ?",
            (key, token, now + ttl, now),
        )
        return token if cursor.rowcount == 1 else None

    def unlock(self, key: str, token: str) -> None:
        self._writer().execute("DELETE FROM locks WHERE key = ? AND token = ?", (key, token))

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        # Compare-token-and-extend in one statement: a lock another process took is left alone.
        # Checked like a write: in a replaced file the lock is gone, and so is the lease.
        cursor = self._writer().execute(
            "UPDATE locks SET expires = ? WHERE key = ? AND token = ?",
            (self.clock() + ttl, key, token),
        )
        return cursor.rowcount == 1

    supports_locks = True

    def size(self) -> tuple[int, int]:
        connection = self._connection()
        # Entries only: the meta records (generations) are bookkeeping, not cached calls.
        (count,) = connection.execute(f"SELECT count(*) FROM entries WHERE {_EVICTABLE}").fetchone()
        (total,) = connection.execute(_TOTAL).fetchone()
        return int(count), int(total or 0)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sqlite": sqlite3.sqlite_version,
            "max_bytes": self.max_bytes,
            "write_timeout": self.write_timeout,
        }

    def close(self) -> None:
        """Let go of every connection: those of this thread and of finished threads now,
        those of running threads once they are done with them.

        A running thread's connection is never closed from here: that thread may be inside
        it (a lease renewal, a generation poll, a late write), and closing a connection
        under a running statement crashes CPython. Dropping our references is enough: each
        is closed once nothing uses it (by the garbage collector: a connection and its
        statement cache refer to each other). A call after `close` opens a connection
        again, so a late call succeeds or fails, never crashes.
        """
        with self._reopen_mutex:
            owners = list(self._owners.items())
            self._forget_connections()
        here = threading.current_thread()
        for reader, owner in owners:
            if owner is here or not owner.is_alive():  # nobody can be inside it
                with contextlib.suppress(sqlite3.Error):
                    reader.connection.close()


def _before_fork() -> None:
    # No lock taken here (a thread may hold one for seconds, reopening): `keyrefs` copies the
    # dictionary in one step under the GIL, so a thread adding a connection cannot break it.
    for tier in list(_OPEN_TIERS):
        for reference in tier._owners.keyrefs():
            reader = reference()
            if reader is not None:
                _FORKING.append(reader)


def _after_fork_in_parent() -> None:
    _FORKING.clear()


def _after_fork_in_child() -> None:
    _INHERITED.extend(_FORKING)
    _FORKING.clear()
    for tier in list(_OPEN_TIERS):
        tier._forget_inherited_connections()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
