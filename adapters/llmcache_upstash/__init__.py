"""llmcache tier on Upstash Redis over its REST API: ``upstash://TOKEN@host``.

Registered through the ``llmcache.backends`` entry point, so a URL is all a user writes::

    llmcache.Cache(workspace="acme", secret=..., tiers=["memory", "upstash://"])  # env vars

Needs the upstash-redis SDK: ``pip install 'llmcache[upstash]'``.
"""

from __future__ import annotations

from llmcache.ext import MissingDependencyError

# The same guard as llmcache_redis/__init__.py: a missing client library becomes a
# MissingDependencyError that names the pip extra (adapters never import each other).
try:
    from ._backend import UpstashBackend
except ImportError as error:
    if (error.name or "").partition(".")[0] not in ("upstash_redis", "httpx"):
        raise
    raise MissingDependencyError(
        f"the upstash:// tier needs the upstash-redis SDK ({error}); install it with: "
        f"pip install 'llmcache[upstash]'"
    ) from error

__all__ = ["UpstashBackend"]
