"""The embedded disk tier: one SQLite file, safe for several processes, bounded in size.

Why SQLite (stdlib) rather than diskcache: diskcache unpickles any row whose mode column says
"pickle", so whoever can write the cache file could make us unpickle their bytes, and our
threat model says nothing read from a tier is ever unpickled. SQLite in WAL mode gives
concurrent readers, one writer at a time across processes, crash safety and survival across
kernel restarts, with no dependency.

Size is tracked by triggers in a one-row table, so checking the bound costs one read; when the
file holds more than `max_bytes` of values, the least recently used entries are evicted (reads
record their access in memory and flush it with the next write, so a hit never writes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._backend import Backend
from ._errors import ConfigError
from ._memory import parse_size

__all__ = ["DiskTier", "default_directory"]

DEFAULT_MAX_BYTES = 2 * 1024**3
_FILE_NAME = "cache.sqlite3"
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


_SELECT = "SELECT value, expires FROM entries WHERE key = ?"


def default_directory() -> Path:
    """LLMCACHE_DIR, else the platform's per-user cache folder."""
    configured = os.environ.get("LLMCACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmcache", appauthor=False))


def _prefix_upper_bound(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class DiskTier(Backend):
    """SQLite-backed tier under `directory` (default: `default_directory()`)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        max_bytes: int | str = DEFAULT_MAX_BYTES,
        timeout: float = 2.0,
    ) -> None:
        self.directory = Path(directory) if directory else default_directory()
        self.max_bytes = parse_size(max_bytes, "max_bytes")
        self.timeout = float(timeout)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"cannot create the disk cache folder {self.directory}: {error}; set "
                f"LLMCACHE_DIR or use disk:///some/writable/path"
            ) from error
        self.path = self.directory / _FILE_NAME
        self.name = f"disk://{self.path}"
        self._local = threading.local()
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._writes_since_check = 0
        with self._connection() as connection:
            connection.executescript(_SCHEMA)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DiskTier:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"max_bytes", "timeout"}
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} in {url!r}; disk accepts max_bytes and "
                f"timeout"
            )
        directory = unquote(parts.netloc + parts.path) or None
        merged: dict[str, Any] = {**query, **options}
        if "timeout" in merged:
            merged["timeout"] = float(merged["timeout"])
        return cls(directory, **merged)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            # A cursor kept for reads: re-executing one cursor is cheaper than a new one.
            self._local.reader = connection.cursor()
            all_connections = self.__dict__.setdefault("_all_connections", [])
            all_connections.append(connection)
        return connection

    def get(self, key: str) -> bytes | None:
        try:
            reader: sqlite3.Cursor = self._local.reader
        except AttributeError:  # this thread's first read
            self._connection()
            reader = self._local.reader
        row = reader.execute(_SELECT, (key,)).fetchone()
        if row is None:
            return None
        value, expires = row
        now = time.time()
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
        rows = self._connection().execute(
            f"SELECT key, value, expires FROM entries WHERE key IN ({marks})", tuple(keys)
        )
        now = time.time()
        found = {k: bytes(v) for k, v, expires in rows if expires is None or expires > now}
        return [found.get(key) for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        now = time.time()
        expires = None if ttl is None else now + ttl
        connection = self._connection()
        with self._touch_lock:
            touched, self._touched = self._touched, {}
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(_UPSERT, (key, value, expires, len(value), now))
            if touched:
                connection.executemany(
                    "UPDATE entries SET accessed = ? WHERE key = ?",
                    [(t, k) for k, t in touched.items()],
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self._writes_since_check += 1
        if self._writes_since_check >= 32 or len(value) > self.max_bytes // 64:
            self._writes_since_check = 0
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        connection = self._connection()
        (total,) = connection.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()
        if total <= self.max_bytes:
            return
        connection.execute(
            "DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
        )
        target = int(self.max_bytes * 0.9)
        while True:
            (total,) = connection.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()
            if total <= target:
                return
            # Evict about as many of the least recently used entries as the excess needs
            # (by their average size), not a fixed batch that could empty a small cache.
            (count,) = connection.execute("SELECT count(*) FROM entries").fetchone()
            if count == 0:
                return
            batch = max(1, min(256, -(-(total - target) * count // total)))
            connection.execute(
                "DELETE FROM entries WHERE key IN "
                "(SELECT key FROM entries ORDER BY accessed LIMIT ?)",
                (batch,),
            )

    def delete(self, key: str) -> None:
        self._connection().execute("DELETE FROM entries WHERE key = ?", (key,))

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        cursor = self._connection().execute(
            "DELETE FROM entries WHERE key >= ? AND key < ?",
            (prefix, _prefix_upper_bound(prefix)),
        )
        return cursor.rowcount

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT INTO counters (key, field, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value",
                [(key, field, delta) for field, delta in deltas.items()],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def read_counters(self, key: str) -> dict[str, float]:
        rows = self._connection().execute("SELECT field, value FROM counters WHERE key = ?", (key,))
        return {field: value for field, value in rows}

    def try_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(8)
        now = time.time()
        cursor = self._connection().execute(
            "INSERT INTO locks (key, token, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires = excluded.expires "
            "WHERE locks.expires <= ?",
            (key, token, now + ttl, now),
        )
        return token if cursor.rowcount == 1 else None

    def unlock(self, key: str, token: str) -> None:
        self._connection().execute("DELETE FROM locks WHERE key = ? AND token = ?", (key, token))

    supports_locks = True

    def size(self) -> tuple[int, int]:
        connection = self._connection()
        (count,) = connection.execute("SELECT count(*) FROM entries").fetchone()
        (total,) = connection.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()
        return int(count), int(total)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sqlite": sqlite3.sqlite_version,
            "max_bytes": self.max_bytes,
        }

    def close(self) -> None:
        for connection in self.__dict__.pop("_all_connections", []):
            with contextlib.suppress(sqlite3.Error):
                connection.close()
        self._local = threading.local()
