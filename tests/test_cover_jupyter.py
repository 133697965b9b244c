"""The `%llmcache` line magic where a user types something odd or clears the cache, and
the extension on a machine without matplotlib (the notebook extra not installed)."""

from __future__ import annotations

import sys

import pytest

import llmcache
from llmcache._jupyter import llmcache_magic, show_figures_inline


def test_an_unbalanced_quote_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert llmcache_magic('report --since "2024-01-01') is None
    assert "%llmcache" in capsys.readouterr().out


def test_clear_says_how_many_entries_it_removed(capsys: pytest.CaptureFixture[str]) -> None:
    double = llmcache.cached(lambda n: 2 * n)
    assert [double(1), double(2)] == [2, 4]
    assert llmcache_magic("clear") is None
    shown = capsys.readouterr().out
    assert "llmcache: removed" in shown and "entries of workspace 'default'" in shown
    assert int(shown.split("removed ")[1].split()[0]) >= 2


class NoDisplay:
    """An IPython shell that must not be touched."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the shell's {name} was used")


def test_without_matplotlib_no_figure_formatter_is_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    show_figures_inline(NoDisplay())  # fails if it reaches for the shell's formatters
