"""The pytest plugin's work: recorded LLM calls for a test suite, in the spirit of
pytest-recording's cassettes (``llmcache_pytest`` is what pytest loads; it comes here only
when a run uses the plugin).

A test marked ``@pytest.mark.llmcache`` (or asking for the ``llmcache_cache`` fixture) runs
with a cache on a folder beside its module, ``<llm_cassettes>/<module>/`` (or
``<module>/<test>/`` with ``scope="test"``), installed as the default cache for the test.
The folder holds a disk tier (``cache.sqlite3``) and the secret its entries are
encrypted with (``secret``, or ``LLMCACHE_CASSETTE_SECRET``), under a fixed workspace, so a
folder recorded on one machine and committed to git replays on any other:

* ``--llmcache=record`` (the default): serve recorded calls, make and record new ones;
* ``--llmcache=replay``: every call must be recorded; a new one raises `CacheMiss`, which
  fails the test with the arguments that differ from the nearest recorded call. The test
  reads a copy of the folder, so replaying never changes what is committed;
* ``--llmcache=refresh``: make every call again and re-record it.

The mode also goes to every other llmcache cache of the run (``LLMCACHE_MODE``, and the
default cache if it is already built), so that ``--llmcache=replay`` lets no call of the run
reach a provider, whatever cache it goes through.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import _config
from ._cache import Cache
from ._disk import _FILE_NAME, DiskTier
from ._errors import CacheMiss
from ._memory import MemoryTier
from ._options import MODES
from ._replay import ReplayCheck

__all__ = ["CassettePlugin", "activate", "cassette_cache", "open_cassette"]

WORKSPACE = "pytest"  # fixed: recorded keys depend on the workspace and the secret only
SECRET_VARIABLE = "LLMCACHE_CASSETTE_SECRET"
_PLUGIN_NAME = "llmcache-cassettes"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
# What SQLite and the disk tier leave beside a database: never part of a recording.
_GITIGNORE = (
    "# Working files of SQLite and of llmcache's disk tier. A recording is a folder's\n"
    "# cache.sqlite3 and its secret (unless LLMCACHE_CASSETTE_SECRET holds it).\n"
    "*-wal\n*-shm\n*.reopen-lock\n"
)
_CALL_OUTCOME = pytest.StashKey[bool]()


class CountingDisk(DiskTier):
    """A cassette's disk tier: entries and namespace records in the file, the ledger's
    counters in memory. A run that only reads recordings must not change the file (git
    would show every recorded folder as modified after each run)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._counts: dict[str, dict[str, float]] = {}

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        record = self._counts.setdefault(key, {})
        for field, delta in deltas.items():
            record[field] = record.get(field, 0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self._counts.get(key, {}))


class CassettePlugin:
    """The plugin of one run, registered on first use: the mode, and the hooks that only a
    run that uses the plugin needs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        given = config.getoption("llmcache_mode") or config.getini("llmcache") or "record"
        if given not in MODES:
            raise pytest.UsageError(
                f"the llmcache ini option must be one of {', '.join(MODES)}, not {given!r}"
            )
        self.mode: str = given
        self._environ: str | None = None
        self._default_mode: tuple[Cache, str] | None = None
        self._session: tuple[Cache, Path] | None = None  # the run's own default cache

    @classmethod
    def of(cls, config: pytest.Config) -> CassettePlugin:
        """The run's plugin, registered now if this is its first use."""
        plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
        if not isinstance(plugin, CassettePlugin):
            plugin = cls(config)
            config.pluginmanager.register(plugin, _PLUGIN_NAME)
        return plugin

    def apply_everywhere(self) -> None:
        """Give the mode to every cache of the run: those built from now on read it from
        LLMCACHE_MODE, and the default cache, if one is built already, is set to it."""
        self._environ = os.environ.get("LLMCACHE_MODE")
        os.environ["LLMCACHE_MODE"] = self.mode
        default = _config._DEFAULT
        if default is not None:
            self._default_mode = (default, default.mode)
            default.mode = self.mode

    def open_session(self) -> None:
        """With the ``llmcache_session`` ini option: a recordings folder (under the root
        folder) as the default cache of the whole run, so that functions decorated with
        ``@llmcache.cached`` when their module is imported (collected after this) record
        and replay too. Not if a default cache is built already (a conftest.py imported
        one): those functions are bound to it, so that is said once, as a warning."""
        name = str(self.config.getini("llmcache_session") or "")
        if not name:
            return
        if _config._DEFAULT is not None:
            self.config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    f"llmcache_session = {name}: the default cache was built before the "
                    f"plugin started (by a conftest.py import?), so the functions decorated "
                    f"then keep it; import them from the test modules instead"
                ),
                stacklevel=2,
            )
            return
        scratch = Path(tempfile.mkdtemp(prefix="llmcache-session-"))
        cache = open_cassette(self.config.rootpath / name, self.mode, scratch)
        self._session = (cache, scratch)
        _config.set_default_cache(cache)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._session is not None:
            cache, scratch = self._session
            if _config._DEFAULT is cache:
                _config.set_default_cache(None)
            close_cassette(cache)
            shutil.rmtree(scratch, ignore_errors=True)
        if self._default_mode is not None:
            cache, mode = self._default_mode
            cache.mode = mode
        if self._environ is not None:
            os.environ["LLMCACHE_MODE"] = self._environ
        elif os.environ.get("LLMCACHE_MODE") == self.mode:
            del os.environ["LLMCACHE_MODE"]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Iterator[None]:
        report: Any = yield
        folder = item.stash.get(_FOLDER, None)
        if call.when == "call" and folder is not None:
            item.stash[_CALL_OUTCOME] = bool(report.passed)
            if call.excinfo is not None and call.excinfo.errisinstance(CacheMiss):
                report.sections.append(("llmcache", self.explain(folder)))
        return report  # type: ignore[no-any-return]

    def explain(self, folder: Path) -> str:
        """What a failed test's report says about its recordings."""
        state = "holds recordings" if (folder / _FILE_NAME).exists() else "is missing"
        if state != "is missing" and self.mode == "replay" and not _secret_of(folder):
            state += (
                f", but not their secret: commit {folder / 'secret'} or set "
                f"{SECRET_VARIABLE} as when they were recorded"
            )
        return (
            f"mode {self.mode}; recordings folder {folder} ({state}). To record the new "
            f"call: pytest --llmcache=record (or refresh to re-record every call), then "
            f"commit the folder"
        )

    def folder(self, item: pytest.Item, marker: pytest.Mark | None) -> Path:
        """The recordings folder of a test: ``<cassettes>/<module>/[<test>/]`` beside its
        module, or the marker's ``cassette`` (a path under ``<cassettes>``)."""
        kwargs = marker.kwargs if marker is not None else {}
        base = Path(str(item.path)).parent / str(self.config.getini("llmcache_cassettes"))
        if kwargs.get("cassette"):
            return base / str(kwargs["cassette"])
        scope = kwargs.get("scope") or self.config.getini("llmcache_scope") or "module"
        if scope not in ("module", "test"):
            raise pytest.UsageError(
                f"llmcache scope must be 'module' or 'test', not {scope!r} ({item.nodeid})"
            )
        folder = base / Path(str(item.path)).stem
        if scope == "test":
            test = item.nodeid.split("::", 1)[-1]
            folder /= _UNSAFE.sub("_", test).strip("_.") or "test"
        return folder


_FOLDER = pytest.StashKey[Path]()


def activate(config: pytest.Config) -> None:
    """A run given ``--llmcache`` (or the ini option): register the plugin, give the mode
    to every cache of the run, open the session's recordings if the ini asks for them."""
    plugin = CassettePlugin.of(config)
    plugin.apply_everywhere()
    plugin.open_session()


def _secret_of(folder: Path) -> bool:
    """Whether the recordings in `folder` come with the secret that reads them."""
    return bool(os.environ.get(SECRET_VARIABLE)) or (folder / "secret").is_file()


def open_cassette(folder: Path, mode: str, scratch: Path) -> Cache:
    """The cache of one recordings folder in `mode`.

    Replay reads a copy in `scratch` (the committed folder never changes); a folder never
    recorded replays from memory alone, so that every call is a `CacheMiss`. Record and
    refresh write to the folder, and put a .gitignore beside it for SQLite's working files.
    """
    secret = os.environ.get(SECRET_VARIABLE) or None
    if mode == "replay":
        if not (folder / _FILE_NAME).exists():
            return Cache(WORKSPACE, secret=secret, tiers=[MemoryTier()], mode=mode)
        copy = scratch / "recordings"
        shutil.copytree(folder, copy, dirs_exist_ok=True)
        folder = copy
    else:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_GITIGNORE)
    return Cache(WORKSPACE, secret=secret, tiers=[MemoryTier(), CountingDisk(folder)], mode=mode)


def close_cassette(cache: Cache) -> None:
    """Close the cache and fold SQLite's write-ahead log into the file, which is then a
    whole recording by itself (what git should keep)."""
    cache.close()
    for backend in cache.backends:
        if isinstance(backend, DiskTier) and backend.path.exists():
            with (
                contextlib.suppress(sqlite3.Error),
                contextlib.closing(sqlite3.connect(backend.path)) as connection,
            ):
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def cassette_cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """The ``llmcache_cache`` fixture: the test's recordings as the default cache."""
    plugin = CassettePlugin.of(request.config)
    item = request.node
    folder = plugin.folder(item, item.get_closest_marker("llmcache"))
    item.stash[_FOLDER] = folder
    scratch = request.getfixturevalue("tmp_path")
    cache = open_cassette(folder, plugin.mode, scratch)
    previous = _config._DEFAULT
    _config.set_default_cache(cache)
    try:
        yield cache
    finally:
        _config.set_default_cache(previous)
        close_cassette(cache)
    _fail_if_swallowed(cache, item)


def _fail_if_swallowed(cache: Cache, item: Any) -> None:
    """A test that passed although a call was refused (the code under test caught the
    `CacheMiss`) fails at teardown: its result came from no recording."""
    refused = [c.refusals for c in cache._gate.checks if isinstance(c, ReplayCheck)]
    missed = [error for errors in refused for error in errors]
    if missed and item.stash.get(_CALL_OUTCOME, False):
        pytest.fail(
            f"the test passed, but the code under test caught a CacheMiss (replay mode): "
            f"{missed[0]}",
            pytrace=False,
        )
