"""llmcache's pytest plugin, as pytest loads it (the ``pytest11`` entry point "llmcache").

Off unless used: this module declares the options, the marker and the fixture, and imports
nothing of llmcache. Only a run given ``--llmcache=MODE`` (or the ``llmcache`` or
``llmcache_session`` ini option), or a test that asks for the ``llmcache_cache`` fixture or
carries the ``llmcache`` marker, loads the plugin's work, `llmcache.pytest_plugin`. Why a
module of its own: pytest imports entry-point plugins before anything else of the run
(coverage measurement included), and every run of every project that has llmcache installed
would otherwise pay for importing it.

Disable it with ``-p no:llmcache``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["llmcache_cache"]

MODES = ("record", "replay", "refresh")
MARKER = (
    "llmcache(cassette=None, scope=None): run the test with a cache of recorded LLM calls "
    "(a folder beside the test module, committed to git) as the default cache; see "
    "--llmcache=record|replay|refresh"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmcache", "llmcache: recorded LLM calls (replay mode)")
    group.addoption(
        "--llmcache",
        dest="llmcache_mode",
        choices=MODES,
        default=None,
        help=(
            "record: serve recorded calls, make and record new ones (the default); replay: "
            "every call must be recorded, a new one fails its test (CacheMiss); refresh: "
            "make every call again and re-record it. Applies to the llmcache_cache fixture "
            "and the llmcache marker, and (through LLMCACHE_MODE) to every llmcache Cache "
            "the run builds"
        ),
    )
    parser.addini("llmcache", "the mode when --llmcache is not given (record, replay, refresh)")
    parser.addini(
        "llmcache_cassettes",
        "the folder of recordings, beside each test module (default: llm_cassettes)",
        default="llm_cassettes",
    )
    parser.addini(
        "llmcache_session",
        "a recordings folder (relative to the root folder, e.g. tests/llm_cassettes/session) "
        "used as the default cache of a run given --llmcache: functions decorated with "
        "@llmcache.cached at import time record and replay there (default: none)",
        default="",
    )
    parser.addini(
        "llmcache_scope",
        "one recording folder per 'module' (the default) or per 'test'",
        default="module",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if (
        config.getoption("llmcache_mode")
        or config.getini("llmcache")
        or config.getini("llmcache_session")
    ):
        from llmcache import pytest_plugin

        pytest_plugin.activate(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``llmcache`` gets the fixture, as if it asked for it."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if (
            isinstance(names, list)
            and "llmcache_cache" not in names
            and item.get_closest_marker("llmcache") is not None
        ):
            names.append("llmcache_cache")


@pytest.fixture
def llmcache_cache(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The test's cache of recorded calls, installed as the default cache for the test:
    ``@llmcache.cached`` functions decorated in the test and ``get_default_cache().wrap()``
    clients use it. Its folder: ``<llm_cassettes>/<module>/`` beside the test module."""
    from llmcache import pytest_plugin

    yield from pytest_plugin.cassette_cache(request)
