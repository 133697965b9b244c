"""`%load_ext llmcache`: the `%llmcache` line magic for notebooks.

    %llmcache stats      this kernel's counters, as a table
    %llmcache report     money and time saved (every process, from the ledger); options:
                         --since N (last N days) or YYYY-MM-DD, --by namespace,model,day
    %llmcache health     each tier's breaker state and latency
    %llmcache on | off   switch the default cache on or off for this kernel
    %llmcache clear      delete this workspace's entries

It works on the default cache (the one behind `@llmcache.cached`, configured from LLMCACHE_*
variables). Keys never depend on cell ids or notebook paths, so re-running a cell, or
restarting the kernel with the disk or a shared tier configured, hits.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from ._config import get_default_cache
from ._errors import ConfigError

__all__ = ["llmcache_magic", "load_ipython_extension", "show_figures_inline"]

_USAGE = (
    "usage: %llmcache stats | report [--since N|YYYY-MM-DD] [--by namespace,model,day] "
    "| health | on | off | clear"
)


class _MagicUsageError(Exception):
    pass


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> Any:
        raise _MagicUsageError(message)


def _report_options(words: list[str]) -> dict[str, Any]:
    parser = _ArgumentParser(prog="%llmcache report", add_help=False)
    parser.add_argument("--since")
    parser.add_argument("--by")
    options = parser.parse_args(words)
    since = options.since
    found: dict[str, Any] = {}
    if since is not None:
        found["since"] = int(since) if since.strip().isdigit() else since
    if options.by is not None:
        found["by"] = tuple(name.strip() for name in options.by.split(",") if name.strip())
    return found


def llmcache_magic(line: str) -> Any:
    """Run one `%llmcache` subcommand; its result renders as HTML in Jupyter."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = []
    command = words[0].lower() if words else ""
    cache = get_default_cache()
    if command == "stats":
        return cache.stats()
    if command == "report":
        try:
            return cache.report(**_report_options(words[1:]))
        except (_MagicUsageError, ConfigError) as error:
            print(f"llmcache: {error}\n{_USAGE}")
            return None
    if command == "health":
        return cache.health()
    if command in ("on", "off"):
        cache.enabled = command == "on"
        print(f"llmcache is {command} for workspace {cache.workspace!r}")
        return None
    if command == "clear":
        removed = cache.clear()
        print(f"llmcache: removed {removed:,} entries of workspace {cache.workspace!r}")
        return None
    print(_USAGE)
    return None


def show_figures_inline(ipython: Any) -> None:
    """Render matplotlib Figures (such as `Report.plot()`'s) inline as PNG.

    `Report.plot()` builds its Figure without pyplot, so that it leaves no global state;
    IPython only learns to display Figures once pyplot is imported, so register it here.
    """
    try:
        from IPython.core.pylabtools import print_figure
        from matplotlib.figure import Figure
    except ImportError:  # the notebook extra is not installed: nothing to render
        return
    formatter = ipython.display_formatter.formatters["image/png"]
    formatter.for_type(
        Figure,
        lambda figure: print_figure(figure, "png", bbox_inches="tight"),  # type: ignore[no-untyped-call]
    )


def load_ipython_extension(ipython: Any) -> None:
    """Called by `%load_ext llmcache`."""
    ipython.register_magic_function(llmcache_magic, magic_kind="line", magic_name="llmcache")
    show_figures_inline(ipython)
