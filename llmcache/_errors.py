"""Exceptions raised by llmcache.

Hierarchy::

    LLMCacheError                 base of everything llmcache raises on purpose
    ├── ConfigError               the cache is configured in a way that cannot work
    │   └── MissingDependencyError  an optional extra is not installed
    ├── KeyDerivationError        an argument cannot be turned into a stable key
    └── BackendError              a tier failed (raised by backends, caught by the core)

A cache problem never reaches the caller of a cached function: backends raise
`BackendError` (or anything else) and the core turns it into a miss. Only user mistakes
(`ConfigError`, `KeyDerivationError`) are raised into user code, with a message that says
what to do.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "KeyDerivationError",
    "LLMCacheError",
    "MissingDependencyError",
]


class LLMCacheError(Exception):
    """Base class of every error llmcache raises on purpose."""


class ConfigError(LLMCacheError, ValueError):
    """The cache is configured in a way that cannot work; the message says how to fix it."""


class MissingDependencyError(ConfigError, ImportError):
    """A tier or provider needs an optional extra that is not installed."""


class KeyDerivationError(LLMCacheError, TypeError):
    """An argument of a cached call cannot be turned into a stable, canonical key."""


class BackendError(LLMCacheError):
    """A tier failed to read or write; the core treats it as a miss."""
