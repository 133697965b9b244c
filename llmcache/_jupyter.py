"""`%load_ext llmcache`: the `%llmcache` line magic for notebooks.

    %llmcache stats      this kernel's counters, as a table
    %llmcache report     money and time saved (every process, from the ledger)
    %llmcache health     each tier's breaker state and latency
    %llmcache on | off   switch the default cache on or off for this kernel
    %llmcache clear      delete this workspace's entries

It works on the default cache (the one behind `@llmcache.cached`, configured from LLMCACHE_*
variables). Keys never depend on cell ids or notebook paths, so re-running a cell, or
restarting the kernel with the disk or a shared tier configured, hits.
"""

from __future__ import annotations

from typing import Any

from ._config import get_default_cache

__all__ = ["llmcache_magic", "load_ipython_extension", "show_figures_inline"]

_USAGE = "usage: %llmcache stats | report | health | on | off | clear"


def llmcache_magic(line: str) -> Any:
    """Run one `%llmcache` subcommand; its result renders as HTML in Jupyter."""
    command = line.strip().lower()
    cache = get_default_cache()
    if command == "stats":
        return cache.stats()
    if command == "report":
        return cache.report()
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
