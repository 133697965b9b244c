"""The dashboard's web app (starlette): the page, its panels as JSON, the report, /metrics.

    GET /                 the page (server-rendered; updates itself by polling /api/panels)
    GET /api/panels       {"panels": {name: html}} for the page
    GET /api/report       the report as `Report.to_dict()`, health and stats, as JSON
    GET /metrics          Prometheus text format (`llmcache.metrics`)
    GET /static/...       the page's script and style, shipped in this package

Reading the ledger and the tiers blocks, so the endpoints are plain functions, which
starlette runs in its thread pool rather than on the event loop.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ._gate import Gate
from ._hourly import SHOWN_HOURS
from ._look import CSS
from ._panels import PANELS, render_panels
from ._snapshot import Snapshots

if TYPE_CHECKING:
    from .._cache import Cache

__all__ = ["DEFAULT_REFRESH_S", "create_app"]

DEFAULT_REFRESH_S = 2.0
_SECTIONS = (
    ("headline", ""),
    ("daily", "Savings and hits per day"),
    ("hourly", f"Per hour, the last {SHOWN_HOURS} hours (UTC)"),
    ("namespaces", "By namespace"),
    ("models", "By model (provider from the model's name)"),
    ("budgets", "Spend budgets"),
    ("tiers", "Tiers"),
)
_PAGE_CSS = """
body { margin: 0; background: #fff; }
.llmcache-report { margin: 0 auto; padding: 16px; }
header.top { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; }
#status { font-size: .8em; padding: 2px 8px; border-radius: 10px; background: #e3f1ee;
  color: #1b6f65; }
#status.offline { background: #f8e3dc; color: #b4532f; }
@media (max-width: 600px) {
  .llmcache-report { padding: 8px; }
  .llmcache-report .figure .value { font-size: 1.5em; }
}
"""


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def create_app(
    cache: Cache,
    *,
    token: str | None = None,
    loopback_only: bool = True,
    refresh_s: float = DEFAULT_REFRESH_S,
) -> Any:
    """The ASGI app of `cache`'s dashboard.

    Args:
        token: required from every request when set (see `_gate`).
        loopback_only: answer only requests for a loopback Host name (bound to loopback).
        refresh_s: how often the page asks for new figures.
    """
    snapshots = Snapshots(cache, min_interval_s=min(0.5, refresh_s / 2))
    script = _asset("dashboard.js")
    style = CSS + _PAGE_CSS

    def page(request: Request) -> Response:
        panels = render_panels(snapshots.current())
        sections = "".join(
            (f"<h2>{html.escape(title)}</h2>" if title else "")
            + f"<section data-panel='{name}'>{panels[name]}</section>"
            for name, title in _SECTIONS
        )
        workspace = html.escape(repr(cache.workspace))
        document = (
            "<!DOCTYPE html><html lang=en><head><meta charset='utf-8'>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>llmcache dashboard: {workspace}</title>"
            "<link rel=stylesheet href='static/dashboard.css'>"
            "<script src='static/dashboard.js' defer></script></head>"
            f"<body data-refresh-ms='{round(refresh_s * 1000)}'><div class=llmcache-report>"
            f"<header class=top><h1>llmcache: workspace {workspace}</h1>"
            "<span id=status>live</span></header>"
            f"<p class=subtitle data-panel='updated'>{panels['updated']}</p>"
            f"{sections}</div></body></html>"
        )
        return HTMLResponse(document)

    def panels(request: Request) -> Response:
        return JSONResponse({"panels": render_panels(snapshots.current())})

    def report(request: Request) -> Response:
        snapshot = snapshots.current()
        return JSONResponse(
            {
                "report": snapshot.report.to_dict(),
                "health": snapshot.health.model_dump(),
                "stats": snapshot.stats.model_dump(),
            }
        )

    def metrics(request: Request) -> Response:
        from ..metrics import exposition

        body, content_type = exposition(cache)
        return Response(body, media_type=content_type)

    def static_script(request: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    def static_style(request: Request) -> Response:
        return Response(style, media_type="text/css; charset=utf-8")

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/panels", panels),
            Route("/api/report", report),
            Route("/metrics", metrics),
            Route("/static/dashboard.js", static_script),
            Route("/static/dashboard.css", static_style),
        ]
    )
    assert set(PANELS) == {name for name, _ in _SECTIONS} | {"updated"}
    return Gate(app, token=token, loopback_only=loopback_only)
