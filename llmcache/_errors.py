"""Exceptions raised by llmcache.

Hierarchy::

    LLMCacheError                 base of everything llmcache raises on purpose
    ├── ConfigError               the cache is configured in a way that cannot work
    │   └── MissingDependencyError  an optional extra is not installed
    ├── KeyDerivationError        an argument cannot be turned into a stable key
    ├── BackendError              a tier failed (raised by backends, caught by the core)
    └── CallRefused               a miss's real call was not made, on purpose
        ├── CacheMiss             replay mode: every call must be a recorded hit
        ├── BudgetExceeded        the spend budget of the period is used up
        └── RateLimited           a rate limit had no slot within the wait allowed

A cache problem never reaches the caller of a cached function: backends raise
`BackendError` (or anything else) and the core turns it into a miss. Only user mistakes
(`ConfigError`, `KeyDerivationError`) and the limits the user set (`CallRefused`: replay
mode, budgets, rate limits) are raised into user code, with a message that says what to do.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetExceeded",
    "CacheMiss",
    "CallRefused",
    "ConfigError",
    "KeyDerivationError",
    "LLMCacheError",
    "MissingDependencyError",
    "RateLimited",
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


class CallRefused(LLMCacheError):
    """A miss's real call was not made because a limit the user set forbids it: replay mode,
    a spend budget or a rate limit. Hits are never refused. Nothing was stored or paid."""


class CacheMiss(CallRefused, LookupError):
    """Replay mode: a call had no recorded entry. The message names the function or
    endpoint, its namespace and, when one was recorded, the arguments that differ from the
    nearest recorded call; `record` or `refresh` mode records it.

    Attributes: identity (the function or endpoint), namespace, differs (the names of the
    arguments that differ from the nearest recorded call; [] if one has the same arguments;
    None when no call of that function was recorded or none could be compared).
    """

    def __init__(
        self,
        message: str,
        *,
        identity: str | None = None,
        namespace: str | None = None,
        differs: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.identity = identity
        self.namespace = namespace
        self.differs = differs


class BudgetExceeded(CallRefused):
    """The spend budget of a workspace or namespace for the period is used up.

    Attributes: spent_usd, limit_usd, period ("day" or "month"), scope (the workspace, or
    the namespace the budget is set for).
    """

    def __init__(
        self, message: str, *, spent_usd: float, limit_usd: float, period: str, scope: str
    ) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.period = period
        self.scope = scope


class RateLimited(CallRefused):
    """A rate limit had no free slot within the time the caller allows.

    Attributes: limit (its text, e.g. "500/min"), model, window_s, retry_after_s (when a
    slot is expected to be free).
    """

    def __init__(
        self, message: str, *, limit: str, model: str, window_s: float, retry_after_s: float
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.model = model
        self.window_s = window_s
        self.retry_after_s = retry_after_s
