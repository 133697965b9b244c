"""`llmcache dashboard`: a live page of a workspace's savings and tier health, and `/metrics`.

The web app (starlette, run by uvicorn: the ``dashboard`` extra) is imported only by
`create_app` and `serve`; `_look` (the headline figures, SVG bars and CSS that the static
report shares) needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._cache import Cache

__all__ = ["create_app", "serve"]


def create_app(cache: Cache, *, token: str | None = None, **options: Any) -> Any:
    """The dashboard's ASGI app for `cache` (see `llmcache.dashboard._app.create_app`)."""
    from ._app import create_app as build

    return build(cache, token=token, **options)


def serve(cache: Cache, **options: Any) -> None:
    """Serve the dashboard until Ctrl-C (see `llmcache.dashboard._server.serve`)."""
    from ._server import serve as run

    run(cache, **options)
