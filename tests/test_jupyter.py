"""The %llmcache magic and the HTML renderings notebooks show."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from IPython.testing.globalipapp import start_ipython

import llmcache


@pytest.fixture(scope="module")
def ipython():  # type: ignore[no-untyped-def]
    shell = start_ipython()
    shell.run_line_magic("load_ext", "llmcache")
    return shell


def test_magic_switches_the_default_cache(ipython, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = llmcache.Cache(workspace="nb", tiers=["memory", f"disk://{tmp_path}/d"])
    llmcache.set_default_cache(cache)
    calls = []

    @llmcache.cached
    def ask(q: str) -> str:
        calls.append(q)
        return q

    ask("a"), ask("a")
    stats = ipython.run_line_magic("llmcache", "stats")
    assert stats.hits == 1 and "<table>" in stats._repr_html_()
    ipython.run_line_magic("llmcache", "off")
    ask("a")
    assert calls == ["a", "a"]
    ipython.run_line_magic("llmcache", "on")
    ask("a")
    assert calls == ["a", "a"]
    assert ipython.run_line_magic("llmcache", "health").ok
    report = ipython.run_line_magic("llmcache", "report")
    assert "<table" in report._repr_html_()
    ipython.run_line_magic("llmcache", "clear")
    ask("a")
    assert calls == ["a", "a", "a"]


def test_keys_do_not_depend_on_where_the_function_is_defined(tmp_path: Path) -> None:
    """Re-running a notebook cell redefines the function: the key must stay the same."""
    cache = llmcache.Cache(workspace="nb", tiers=["memory"])
    source = "def ask(q: str) -> str:\n    return q\n"
    keys = []
    for cell in range(2):
        namespace: dict[str, object] = {"__name__": "__main__"}
        exec(compile(source, f"<ipython-input-{cell}>", "exec"), namespace)
        keys.append(cache.cached(namespace["ask"]).cache_key("q"))
    assert keys[0] == keys[1]


def test_html_reprs(tmp_path: Path) -> None:
    cache = llmcache.Cache(workspace="nb", tiers=["memory"])
    ask = cache.cached(lambda q: [q])
    ask("x")
    hit = ask("x")
    assert "<table>" in cache._repr_html_()
    assert "<table>" in cache.health()._repr_html_()
    info = llmcache.info(hit)
    assert info is not None and "memory" in info._repr_html_()


def test_report_magic_takes_since(
    ipython, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    cache = llmcache.Cache(workspace="nb-since", tiers=["memory", f"disk://{tmp_path}/d"])
    llmcache.set_default_cache(cache)
    ask = cache.cached(lambda q: q)
    ask("a"), ask("a")
    report = ipython.run_line_magic("llmcache", "report --since 7")
    assert report is not None and report.totals.calls == 2
    assert report.first_day >= report.last_day - datetime.timedelta(days=6)
    by_day = ipython.run_line_magic("llmcache", "report --since 2000-01-01 --by day")
    assert by_day.by == ("day",) and by_day.totals.calls == 2
    assert ipython.run_line_magic("llmcache", "report --since yesterday") is None
    assert ipython.run_line_magic("llmcache", "report --colour red") is None
    printed = capsys.readouterr().out
    assert "not a date" in printed and "usage: %llmcache" in printed


def test_dir_shows_only_the_public_api() -> None:
    names = dir(llmcache)
    for typing_name in ("Any", "Callable", "Iterable", "Mapping", "annotations"):
        assert typing_name not in names
    assert set(llmcache.__all__) <= set(names)
    assert all(hasattr(llmcache, name) for name in names)
