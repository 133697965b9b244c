"""The checks a cache's real calls pass (`_gate`), built from its configuration.

The check that serves imported entries (`_imported`: cheap until something was imported
into a namespace) and replay mode are always installed (replay asks the mode in force at
each miss, which `options(mode=...)` may change for a block); a budget and rate limits only
when configured.
Each lives in its own module, imported only by a cache that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["DEFAULT_LIMIT_WAIT", "install_checks"]

DEFAULT_LIMIT_WAIT = 60.0  # how long a miss may wait for a rate limit's slot, by default


def install_checks(
    cache: Cache,
    limits: Mapping[str, Any] | None,
    budget_usd: float | Mapping[str, Any] | None,
) -> None:
    """Put the imported entries' check, then replay's, then the budget's, then the rate
    limits' in `cache._gate`. Imported entries come first: a miss they serve is a hit (in
    replay mode too) and spends nothing."""
    from ._imported import ImportedCheck
    from ._replay import ReplayCheck

    cache._gate.add(ImportedCheck(cache))
    cache._gate.add(ReplayCheck(cache))
    if budget_usd is not None:
        from ._budget import BudgetCheck

        cache._budget = BudgetCheck(cache, budget_usd)
        cache._gate.add(cache._budget)
    if limits:
        from ._limits import LimitCheck

        cache._gate.add(LimitCheck(cache, limits))
