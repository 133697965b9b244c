"""The public surface: everything in __all__ exists, and every public name is in __all__."""

from __future__ import annotations

import inspect

import pytest

import llmcache


def test_all_names_exist() -> None:
    for name in llmcache.__all__:
        assert hasattr(llmcache, name), name


def test_every_public_class_and_function_is_exported() -> None:
    public = {
        name
        for name, value in vars(llmcache).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("llmcache")
    }
    assert public <= set(llmcache.__all__), public - set(llmcache.__all__)


def test_architecture_surface_is_there() -> None:
    for name in ("Cache", "cached", "options", "info", "register_type", "Backend", "CallSite"):
        assert name in llmcache.__all__
    for method in ("cached", "wrap", "report", "stats", "health", "invalidate", "clear", "delete"):
        assert callable(getattr(llmcache.Cache, method))


def test_lazily_loaded_names_are_the_public_classes() -> None:
    """The pydantic models and the Jupyter extension load on first use (not at import) and
    are then the very objects their modules define."""
    from llmcache import (
        CacheStats,
        CallInfo,
        Health,
        TierHealth,
        TierStats,
        _jupyter,
        _stats,
        load_ipython_extension,
    )

    assert (CacheStats, CallInfo, Health, TierHealth, TierStats) == (
        _stats.CacheStats,
        _stats.CallInfo,
        _stats.Health,
        _stats.TierHealth,
        _stats.TierStats,
    )
    assert load_ipython_extension is _jupyter.load_ipython_extension
    assert set(llmcache._LAZY) <= set(llmcache.__all__) == set(dir(llmcache))


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    assert not hasattr(llmcache, "NoSuchName")
    with pytest.raises(AttributeError, match="NoSuchName"):
        llmcache.NoSuchName  # noqa: B018
