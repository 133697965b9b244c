"""llmcache tiers on Redis: ``redis://``, ``rediss://`` (TLS) and ``redis+cluster://``.

Registered through the ``llmcache.backends`` entry points, so a URL is all a user writes::

    llmcache.Cache(workspace="acme", secret=..., tiers=["memory", "redis://127.0.0.1:6379/0"])

Needs redis-py (and hiredis, used when installed): ``pip install 'llmcache[redis]'``.
"""

from __future__ import annotations

from llmcache.ext import MissingDependencyError

# The same guard as llmcache_upstash/__init__.py: a missing client library becomes a
# MissingDependencyError that names the pip extra (adapters never import each other).
try:
    from ._cluster import RedisClusterBackend
    from ._standalone import RedisBackend
except ImportError as error:
    if (error.name or "").partition(".")[0] not in ("redis", "hiredis"):
        raise
    raise MissingDependencyError(
        f"the redis:// tiers need redis-py ({error}); install it with: "
        f"pip install 'llmcache[redis]'"
    ) from error

__all__ = ["RedisBackend", "RedisClusterBackend"]
