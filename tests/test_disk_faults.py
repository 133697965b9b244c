"""The disk tier under real faults: bad folders and files, foreign values in the SQLite file,
a write lock held by another connection, a deleted or replaced file, a full disk, fork() and
two processes at once (issue 9, items 8, 9, 10 and 13)."""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmcache
from llmcache._disk import DEFAULT_WRITE_TIMEOUT, DiskTier
from tests.clocks import wait_until

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _sqlite(path: Path) -> sqlite3.Connection:
    """A second, independent connection to the tier's file (as another process would have)."""
    return sqlite3.connect(path, isolation_level=None, timeout=5)


# -- item 9: a bad cache folder must not crash a program at import ----------------------------
MODULE = """
import llmcache

calls = []


@llmcache.cached
def ask(question):
    calls.append(question)
    return question.upper()
"""

PROGRAM = """
import llmcache
import cached_module

assert cached_module.ask("a") == "A" and cached_module.ask("a") == "A"
assert cached_module.calls == ["a"], cached_module.calls
print("tiers:", [tier.name for tier in llmcache.get_default_cache()._tiers])
"""


def _bad_folder(case: str, tmp_path: Path) -> tuple[Path, Path]:
    """(LLMCACHE_DIR, the path the warning must name) for each way a folder can be unusable."""
    folder = tmp_path / "cache"
    if case == "directory at the database path":
        (folder / "cache.sqlite3").mkdir(parents=True)
        return folder, folder / "cache.sqlite3"
    if case == "not an SQLite file":
        folder.mkdir()
        (folder / "cache.sqlite3").write_bytes(b"these are not the bytes of a database\n" * 50)
        return folder, folder / "cache.sqlite3"
    if case == "folder under a regular file":
        (tmp_path / "a-file").write_text("x")
        return tmp_path / "a-file" / "cache", tmp_path / "a-file" / "cache"
    if case == "read-only folder":
        if IS_ROOT:  # root ignores permissions; nobody can create files in /proc
            return Path("/proc/self"), Path("/proc/self")
        folder.mkdir()
        folder.chmod(0o555)
        return folder, folder
    if case == "unreadable secret":
        folder.mkdir()
        if IS_ROOT:
            (folder / "secret").mkdir()  # unreadable as a file, even for root
        else:
            (folder / "secret").write_text("00" * 32)
            (folder / "secret").chmod(0)
        return folder, folder / "secret"
    raise AssertionError(case)


BAD_FOLDERS = [
    "directory at the database path",
    "not an SQLite file",
    "folder under a regular file",
    "read-only folder",
    "unreadable secret",
]


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_default_cache_runs_from_memory_with_one_warning_when_its_folder_is_unusable(
    case: str, tmp_path: Path
) -> None:
    folder, culprit = _bad_folder(case, tmp_path)
    (tmp_path / "cached_module.py").write_text(MODULE)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")},
        "LLMCACHE_DIR": str(folder),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "adapters")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "tiers: []" in result.stdout  # memory only
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line, once
    assert "without its disk tier" in lines[0] and str(culprit) in lines[0]
    assert "LLMCACHE_DIR" in lines[0] or "LLMCACHE_SECRET" in lines[0]  # how to fix it
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_processes_racing_to_create_the_secret_all_get_the_same_one(tmp_path: Path) -> None:
    from llmcache._config import load_or_create_secret

    for round in range(15):
        folder = tmp_path / f"race-{round}"
        pipes, children = [], []
        for _ in range(4):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.write(write, load_or_create_secret(folder).hex().encode())
                finally:
                    os._exit(0)
            os.close(write)
            pipes.append(read)
            children.append(pid)
        secrets = set()
        for read, pid in zip(pipes, children, strict=True):
            with os.fdopen(read) as handle:
                secrets.add(handle.read())
            os.waitpid(pid, 0)
        # Before: a process could read the file another had created but not yet written.
        assert len(secrets) == 1 and len(secrets.pop()) == 64
        assert sorted(p.name for p in folder.iterdir()) == ["secret"]  # no drafts left


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_an_explicit_disk_tier_in_an_unusable_folder_is_a_config_error(
    case: str, tmp_path: Path
) -> None:
    folder, culprit = _bad_folder(case, tmp_path)
    with pytest.raises(llmcache.ConfigError) as raised:
        llmcache.Cache(tiers=["memory", f"disk://{folder}"])
    message = str(raised.value)
    assert str(culprit) in message and "\n" not in message
    assert not isinstance(raised.value, sqlite3.Error)


def test_a_mistake_in_the_default_disk_url_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCACHE_TIERS", "memory,disk://?max_bytes=lots")
    with pytest.raises(llmcache.ConfigError):
        llmcache.get_default_cache()


# -- item 10: whatever SQLite type the value column holds, a read is an integrity miss ---------
def _disk_only_cache(folder: Path) -> tuple[llmcache.Cache, Any, list[str]]:
    cache = llmcache.Cache(workspace="faults", tiers=[f"disk://{folder}"])
    calls: list[str] = []

    @cache.cached
    def ask(question: str) -> str:
        calls.append(question)
        return "answer " + question

    return cache, ask, calls


@pytest.mark.parametrize(
    "foreign",
    [42, -(2**63), 2.5, float("inf"), "plain text", "", b"", b"\x01garbage"],
    ids=repr,
)
def test_a_foreign_value_in_the_sqlite_file_is_an_integrity_miss(
    foreign: object, tmp_path: Path
) -> None:
    cache, ask, calls = _disk_only_cache(tmp_path / "d")
    assert ask("q") == "answer q"
    with contextlib.closing(_sqlite(tmp_path / "d" / "cache.sqlite3")) as other:
        changed = other.execute(
            "UPDATE entries SET value = ? WHERE key = ?", (foreign, ask.cache_key("q"))
        ).rowcount
    assert changed == 1
    assert ask("q") == "answer q"  # no TypeError: the real call is made again
    assert calls == ["q", "q"]
    tier = cache.stats().tiers[-1]
    assert (tier.misses, tier.integrity_failures, tier.errors) == (1, 1, 0)
    assert ask("q") == "answer q" and calls == ["q", "q"]  # stored again, then a hit
    cache.close()


sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(),
    st.binary(),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=sqlite_values, expires=sqlite_values)
def test_disk_get_returns_bytes_or_none_whatever_the_row_holds(
    tmp_path: Path, value: object, expires: object
) -> None:
    tier = DiskTier(tmp_path / "property")
    try:
        with contextlib.closing(_sqlite(tier.path)) as other:
            # A schema altered by whoever can write the file: no NOT NULL, no types.
            other.execute("DROP TABLE entries")
            other.execute(
                "CREATE TABLE entries (key TEXT PRIMARY KEY, value, expires, size, accessed)"
            )
            other.execute("INSERT INTO entries VALUES ('k', ?, ?, 0, 0)", (value, expires))
        for found in (tier.get("k"), *tier.get_many(["k", "absent"])):
            assert found is None or type(found) is bytes
    finally:
        tier.close()
        for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
            (tmp_path / "property" / name).unlink(missing_ok=True)


# -- item 13: a write lock held elsewhere, and a deleted or replaced file ----------------------
@pytest.fixture
def write_lock_held_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A folder whose database another connection holds the write lock of (BEGIN IMMEDIATE)."""
    folder = tmp_path / "locked"
    DiskTier(folder).close()
    other = _sqlite(folder / "cache.sqlite3")
    other.execute("BEGIN IMMEDIATE")
    yield folder
    other.execute("ROLLBACK")
    other.close()


def test_writes_give_up_quickly_and_reads_still_work_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "locked"
    tier = DiskTier(folder)
    tier.set("llmc:kept", b"stored before the lock", None)
    other = _sqlite(tier.path)
    other.execute("BEGIN IMMEDIATE")
    try:
        # A generous bound from the configured wait, far below the 2 s per write of before.
        bound = 10 * DEFAULT_WRITE_TIMEOUT + 0.5
        for attempt in range(3):
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                tier.set(f"llmc:new{attempt}", b"value", None)
            assert time.monotonic() - started < bound
            assert tier.get("llmc:kept") == b"stored before the lock"  # WAL: readers go on
    finally:
        other.execute("ROLLBACK")
        other.close()
    tier.set("llmc:new", b"value", None)  # the lock is gone: writes work again
    assert tier.get("llmc:new") == b"value"
    tier.close()


def test_misses_are_not_slowed_by_a_write_lock_held_elsewhere(
    write_lock_held_elsewhere: Path,
) -> None:
    cache = llmcache.Cache(
        workspace="busy", tiers=["memory", f"disk://{write_lock_held_elsewhere}"]
    )
    calls: list[str] = []

    @cache.cached
    def ask(question: str) -> str:
        calls.append(question)
        return question * 2

    # Each miss may try a lock, a store and an unlock: a few short waits, never seconds.
    bound = 10 * DEFAULT_WRITE_TIMEOUT + 0.5
    for question in "abcdef":
        started = time.monotonic()
        assert ask(question) == question * 2
        assert time.monotonic() - started < bound, question
    assert ask("a") == "aa" and calls == list("abcdef")  # the result is still kept (memory)
    cache.close()


def _entries_in(path: Path) -> set[str]:
    with contextlib.closing(_sqlite(path)) as reader:
        return {key for (key,) in reader.execute("SELECT key FROM entries")}


def test_a_deleted_database_is_noticed_and_recreated(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "d")
    tier.set("llmc:before", b"1", None)
    for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
        (tmp_path / "d" / name).unlink(missing_ok=True)
    tier.set("llmc:after", b"2", None)
    assert _entries_in(tier.path) == {"llmc:after"}  # in the file others open, not a ghost
    assert tier.get("llmc:after") == b"2" and tier.get("llmc:before") is None
    tier.close()


def test_a_deleted_cache_folder_is_recreated(tmp_path: Path) -> None:
    import shutil

    tier = DiskTier(tmp_path / "d")
    tier.set("llmc:before", b"1", None)
    shutil.rmtree(tmp_path / "d")  # e.g. rm -rf ~/.cache/llmcache
    tier.set("llmc:after", b"2", None)
    assert _entries_in(tier.path) == {"llmc:after"}
    tier.close()


def test_a_replaced_database_is_noticed_by_writers_and_by_other_threads(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "d")
    tier.set("llmc:old", b"old", None)
    seen_in_thread: list[bytes | None] = []
    reader = threading.Thread(target=lambda: seen_in_thread.append(tier.get("llmc:old")))
    reader.start()
    reader.join()
    assert seen_in_thread == [b"old"]  # that thread now has a connection of its own

    replacement = DiskTier(tmp_path / "new")
    replacement.set("llmc:from-replacement", b"new", None)
    replacement.close()  # its last connection: the WAL is folded into the file
    os.replace(replacement.path, tier.path)  # e.g. a backup restored with mv

    tier.set("llmc:written-after", b"3", None)
    assert _entries_in(tier.path) == {"llmc:from-replacement", "llmc:written-after"}
    found: list[bytes | None] = []
    reader = threading.Thread(target=lambda: found.append(tier.get("llmc:from-replacement")))
    reader.start()
    reader.join()
    assert found == [b"new"]  # the other thread reads the new file too
    assert tier.get("llmc:old") is None
    with contextlib.closing(_sqlite(tier.path)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    tier.close()


STRESS = """
import os, shutil, sqlite3, sys, threading, time
from llmcache._disk import DiskTier

folder = sys.argv[1]
tier = DiskTier(folder)
stop = threading.Event()
progress = threading.Condition()
attempts = [0]  # writes and reads tried by the threads, failed or not


def work(n):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            tier.set(f"llmc:{n}:{i}", os.urandom(200), None)
            tier.get(f"llmc:{n}:{i}")
        except sqlite3.Error:
            pass  # a write racing the deletion fails: the core counts it; no crash, no hang
        with progress:
            attempts[0] += 1
            progress.notify_all()


threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for thread in threads:
    thread.start()
for round in range(10):
    with progress:  # the threads are at work on the file (or its replacement) meanwhile
        target = attempts[0] + 20
        assert progress.wait_for(lambda: attempts[0] >= target, 60), "the threads hang"
    if round % 2:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(os.path.join(folder, "cache.sqlite3" + suffix))
            except FileNotFoundError:
                pass
stop.set()
for thread in threads:
    thread.join()
for attempt in range(20):  # the last deletion may have left a torn file: it is replaced
    try:
        tier.set("llmc:final", b"x", None)
        break
    except sqlite3.Error:
        shutil.rmtree(folder, ignore_errors=True)
with sqlite3.connect(tier.path) as check:
    print(check.execute("PRAGMA integrity_check").fetchone()[0],
          check.execute("SELECT count(*) FROM entries WHERE key = 'llmc:final'").fetchone()[0])
"""


def test_threads_writing_while_the_file_is_deleted_again_and_again(tmp_path: Path) -> None:
    # Reopening must not close a connection another thread is inside (that crashed CPython).
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    result = subprocess.run(
        [sys.executable, "-c", STRESS, str(tmp_path / "d")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "1"]


CLOSE_UNDER_THREADS = """
import faulthandler, sqlite3, sys, threading, time
from llmcache._disk import DiskTier

faulthandler.enable()
folder, rounds = sys.argv[1], int(sys.argv[2])
keys = [f"llmc:{i}" for i in range(50)]
survived = 0
for round in range(rounds):
    tier = DiskTier(f"{folder}/{round}")
    for key in keys:
        tier.set(key, b"x" * 1000, None)
    stop = threading.Event()
    progress = threading.Condition()
    polls = [0] * 4  # polls each thread has finished


    def poll(n):  # what the generation watcher, the lease renewer and late callers do
        while not stop.is_set():
            try:
                tier.get_many(keys)
                tier.get("llmc:1")
            except sqlite3.Error:
                pass  # a statement cut short by close() may fail: it must not crash
            with progress:
                polls[n] += 1
                progress.notify_all()


    def polled_past(before):
        # Until each thread has finished a poll after `before` (a count, or one each).
        marks = before if isinstance(before, list) else [before] * len(polls)
        with progress:
            done = lambda: all(p > m for p, m in zip(polls, marks))
            assert progress.wait_for(done, 60), "a polling thread hangs"


    threads = [threading.Thread(target=poll, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    polled_past(0)  # every thread is at work in the tier
    tier.close()  # Cache.close() while its background threads are inside the tier
    polled_past(polls.copy())  # and every one went on using it, closed
    stop.set()
    for thread in threads:
        thread.join()
    survived += 1
print(survived)
"""


def test_closing_the_tier_while_other_threads_are_inside_it_does_not_crash(
    tmp_path: Path,
) -> None:
    # close() closed every thread's connection, under threads running statements on them:
    # a segmentation fault within a few rounds (it killed the whole test suite once).
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    result = subprocess.run(
        [sys.executable, "-c", CLOSE_UNDER_THREADS, str(tmp_path), "100"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["100"]


def test_a_closed_tier_lets_go_of_its_connections_and_a_late_call_still_works(
    tmp_path: Path,
) -> None:
    tier = DiskTier(tmp_path / "d")
    tier.set("llmc:a", b"1", None)
    other_thread_saw: list[bytes | None] = []
    reader = threading.Thread(target=lambda: other_thread_saw.append(tier.get("llmc:a")))
    reader.start()
    reader.join()
    own = tier._connection()
    tier.close()
    with pytest.raises(sqlite3.ProgrammingError):  # this thread's connection is closed now
        own.execute("SELECT 1")
    assert other_thread_saw == [b"1"]
    assert tier.get("llmc:a") == b"1"  # a late call (a lease renewal, a poll) still works
    tier.close()


def _meta_keys_in(path: Path) -> set[str]:
    """The meta records in the file at `path` now (none while it is missing or being made)."""
    if not path.exists():
        return set()
    try:
        return {key for key in _entries_in(path) if key.startswith("llmc-meta:")}
    except sqlite3.OperationalError:  # the tier is creating it: no schema yet
        return set()


def test_a_process_that_only_reads_notices_a_replaced_file_at_its_generation_poll(
    tmp_path: Path,
) -> None:
    url = f"disk://{tmp_path / 'd'}"
    with llmcache.Cache(workspace="w", tiers=[url]) as first:
        first.load(first.namespace("research"))  # the generation records are in the file
    poll = 0.05
    reader = llmcache.Cache(workspace="w", tiers=[url], generation_poll=poll)
    reader.load(reader.namespace("research"))  # it finds them: it reads, and writes nothing
    disk = reader._tiers[0].backend
    assert isinstance(disk, DiskTier)
    records = _meta_keys_in(disk.path)
    assert len(records) == 2  # the workspace's generation and the namespace's
    disk.path.unlink()  # e.g. `rm cache.sqlite3`: its -wal and -shm stay, still open here
    # Its watcher's next polls (get_many) notice the deleted file, reopen (a new, empty
    # file) and re-publish the records the process holds. Before, the polls went on reading
    # the deleted file through the open connection: no file, and nobody was told.
    wait_until(
        lambda: _meta_keys_in(disk.path) == records,
        200 * poll + 10,
        "the generation records published again",
        interval=poll,
    )
    assert reader.stats().tiers[0].errors == 0, reader.health()
    reader.close()


# -- item 8, disk half: a full disk -------------------------------------------------------------
class _CappedDiskTier(DiskTier):
    """A disk tier whose file may not grow past 64 pages: SQLite's own SQLITE_FULL."""

    def _open(self, create: bool = False) -> sqlite3.Connection:
        connection = super()._open(create)
        connection.execute("PRAGMA max_page_count = 64")
        return connection


@pytest.fixture
def full_disk_tier(tmp_path: Path) -> Iterator[DiskTier]:
    """A tier on a really small filesystem (a 256 KiB tmpfs) where we may mount one, else a
    tier whose file SQLite caps at 64 pages; both fail writes with SQLITE_FULL."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = IS_ROOT and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
            capture_output=True,
        ).returncode
        == 0
    )
    tier = DiskTier(mount_point) if mounted else _CappedDiskTier(mount_point)
    try:
        yield tier
    finally:
        tier.close()
        if mounted:
            _unmount(mount_point)


def _unmount(mount_point: Path) -> None:
    """Unmount once the tier's last connections are closed: close() leaves a connection a
    running thread may be inside (a cache's watcher finishing its tick) to the garbage
    collector, for when that thread is done with it."""

    def unmounted() -> bool:
        gc.collect()
        return subprocess.run(["umount", str(mount_point)], capture_output=True).returncode == 0

    with contextlib.suppress(AssertionError):
        wait_until(unmounted, 5, "unmounted", interval=0.1)
        return
    subprocess.run(["umount", str(mount_point)], check=True)  # fails, and says why


def _fill(tier: DiskTier) -> BaseException:
    for i in range(1000):
        try:
            tier.set(f"llmc:fill:{i}", os.urandom(8000), None)
        except sqlite3.Error as error:
            return error
    raise AssertionError("the small disk never filled up")


def test_a_full_disk_raises_its_own_error_and_reads_go_on(full_disk_tier: DiskTier) -> None:
    full_disk_tier.set("llmc:kept", b"stored before the disk filled up", None)
    error = _fill(full_disk_tier)
    assert "full" in str(error) and "rollback" not in str(error)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        full_disk_tier.set("llmc:one-more", os.urandom(20_000), None)
    assert full_disk_tier.get("llmc:kept") == b"stored before the disk filled up"
    assert full_disk_tier.get("llmc:fill:0") is not None
    assert full_disk_tier.get_many(["llmc:kept"]) == [b"stored before the disk filled up"]


def test_health_shows_the_full_disk(
    full_disk_tier: DiskTier, request: pytest.FixtureRequest
) -> None:
    cache = llmcache.Cache(workspace="full", tiers=["memory", full_disk_tier])  # its secret
    _fill(full_disk_tier)
    request.addfinalizer(cache.close)  # its watcher stops: the disk can be unmounted

    @cache.cached
    def ask(question: str) -> str:
        return question * 5000  # too big for what is left

    assert ask("x") == "x" * 5000  # the caller never sees the failure
    errors = [tier.last_error or "" for tier in cache.health().tiers]
    assert any("full" in error for error in errors), errors
    assert not any("rollback" in error for error in errors), errors


# -- the byte bound keeps meta records ---------------------------------------------------------
def test_the_byte_bound_never_evicts_meta_records(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "d", max_bytes=100_000)
    meta = "llmc-meta:w#0123456789abcdef:generations-record"
    tier.set(meta, b"m" * 2_000, None)  # written first and never read: the LRU's oldest
    for i in range(60):
        tier.set(f"llmc:w#0123456789abcdef:n:0:{i:03d}", b"v" * 10_000, None)
    assert tier.get(meta) == b"m" * 2_000
    entries, size = tier.size()
    assert size <= 100_000 + 10_000 and entries < 15
    tier.close()


def test_meta_records_alone_over_the_bound_stop_eviction_instead_of_looping(
    tmp_path: Path,
) -> None:
    tier = DiskTier(tmp_path / "d", max_bytes=10_000)
    for i in range(40):
        tier.set(f"llmc-meta:w#x:record-{i}", b"m" * 1_000, None)
    assert all(tier.get(f"llmc-meta:w#x:record-{i}") is not None for i in range(40))
    tier.close()


# -- fork() and two processes ------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "d")
    tier.set("llmc:parent", b"from the parent", None)
    inherited = tier._connection()
    changes_before = inherited.total_changes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        status = 1
        try:
            ok = tier.get("llmc:parent") == b"from the parent"
            tier.set("llmc:child", b"from the child", None)
            untouched = inherited.total_changes == changes_before
            os.write(write, f"{ok} {untouched}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    report = os.read(read, 100).decode()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "True True"  # it read, and wrote through a connection of its own
    assert tier.get("llmc:child") == b"from the child"  # the parent's connection still works
    tier.set("llmc:parent-again", b"x", None)
    tier.close()


WORKER = """
import sys
import llmcache

folder, names = sys.argv[1], sys.argv[2:]
cache = llmcache.Cache(workspace="two", tiers=["memory", f"disk://{folder}?write_timeout=5"])
calls = []


@cache.cached
def ask(question):
    calls.append(question)
    return "answer " + question


for i in range(150):
    for name in names:
        assert ask(f"{name}-{i}") == f"answer {name}-{i}"
cache.close()
print(len(calls), cache.stats().tiers[0].errors)
"""


def _run_workers(folder: Path, *name_lists: list[str]) -> list[list[str]]:
    """Run one worker process per list of names, all at once; their printed (calls, errors)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")]),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder), *names],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for names in name_lists
    ]
    printed = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
        printed.append(stdout.split())
    return printed


def test_two_processes_share_one_disk_tier(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    DiskTier(folder).close()  # the file and its secret exist before the race
    first, second = _run_workers(folder, ["one", "shared"], ["two", "shared"])
    assert first[1] == second[1] == "0"  # no tier errors in either process
    assert 300 <= int(first[0]) + int(second[0]) <= 450  # a shared call may be made twice
    # A third process finds every entry either of them wrote: no real call at all.
    (third,) = _run_workers(folder, ["one", "two", "shared"])
    assert third == ["0", "0"]


def test_write_timeout_is_a_url_option(tmp_path: Path) -> None:
    tier = DiskTier.from_url(f"disk://{tmp_path}/d?write_timeout=0.2")
    assert tier.write_timeout == 0.2 and tier.describe()["write_timeout"] == 0.2
    tier.close()
    with pytest.raises(llmcache.ConfigError, match="write_timeout"):
        DiskTier.from_url(f"disk://{tmp_path}/d?write_timeout=soon")
