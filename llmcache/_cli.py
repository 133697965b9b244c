"""The `llmcache` command line: inspect, report on, invalidate and clear a cache.

Configured by the same LLMCACHE_* variables as the library, or by flags. A user mistake
(unknown tier URL, unreachable server, wrong token, missing secret) is one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._cache import Cache
from ._config import env_settings
from ._errors import LLMCacheError

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmcache",
    help="Inspect, report on, invalidate and clear an llmcache cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

Workspace = Annotated[
    str | None, typer.Option("--workspace", "-w", help="Workspace (default: LLMCACHE_WORKSPACE).")
]
Tiers = Annotated[
    str | None,
    typer.Option("--tiers", "-t", help="Comma-separated tier URLs (default: LLMCACHE_TIERS)."),
]
Secret = Annotated[
    str | None, typer.Option("--secret", help="Workspace secret (default: LLMCACHE_SECRET).")
]
Directory = Annotated[
    Path | None, typer.Option("--dir", help="Disk tier folder (default: LLMCACHE_DIR).")
]


class UsageError(Exception):
    """A problem the user can fix; printed as one line."""


def _open(
    workspace: str | None,
    tiers: str | None,
    secret: str | None,
    directory: Path | None,
    *,
    check: bool = True,
) -> Cache:
    if directory is not None:
        import os

        os.environ["LLMCACHE_DIR"] = str(directory)
    settings: dict[str, Any] = env_settings()
    settings.pop("enabled", None)  # the command line works on the cache even if disabled
    if workspace:
        settings["workspace"] = workspace
    if tiers:
        settings["tiers"] = [t.strip() for t in tiers.split(",") if t.strip()]
    if secret:
        settings["secret"] = secret
    cache = Cache(**settings)
    if check:
        for tier in cache.tiers:
            try:
                tier.backend.ping()
            except Exception as error:
                raise UsageError(f"tier {tier.name} is unusable: {_one_line(error)}") from None
    return cache


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def stats(
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Entries and bytes in each tier, and the ledger's calls and hits for today."""
    with _open(workspace, tiers, secret, directory) as cache:
        table = Table(title=f"llmcache workspace {cache.workspace!r}")
        for column in ("tier", "entries", "bytes", "state"):
            table.add_column(column, justify="right" if column in ("entries", "bytes") else "left")
        for tier in cache.stats().tiers:
            state = "closed" if tier.name == "memory" else _tier_state(cache, tier.name)
            table.add_row(tier.name, _num(tier.entries), _num(tier.bytes), state)
        console.print(table)
        console.print(str(cache.report(since=0)), highlight=False)


def _tier_state(cache: Cache, name: str) -> str:
    return next((t.state for t in cache.tiers if t.name == name), "?")


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@app.command()
def report(
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
    since: Annotated[
        str | None, typer.Option(help="From this day: YYYY-MM-DD, or a number of days back.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with the plot here.")
    ] = None,
) -> None:
    """Calls, hits, money spent and saved, time saved, by namespace and model."""
    with _open(workspace, tiers, secret, directory) as cache:
        since_value: Any = int(since) if since is not None and since.isdigit() else since
        result = cache.report(since=since_value)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            console.print(str(result), highlight=False)
        if html is not None:
            result.to_html(html)
            errors.print(f"wrote {html}")


@app.command()
def invalidate(
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace to invalidate.")],
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Make every entry of a namespace unreachable (O(1); other processes follow within 1 s)."""
    with _open(workspace, tiers, secret, directory) as cache:
        cache.invalidate(namespace)
        console.print(f"invalidated namespace {namespace!r} of workspace {cache.workspace!r}")


@app.command()
def clear(
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete this workspace's entries from every tier (never anything else's)."""
    with _open(workspace, tiers, secret, directory) as cache:
        names = ", ".join(t.name for t in cache.tiers) or "memory"
        if not yes:
            if not sys.stdin.isatty():
                _fail("clear needs confirmation: run it in a terminal, or pass --yes")
            typer.confirm(
                f"Delete every entry of workspace {cache.workspace!r} from {names}?", abort=True
            )
        removed = cache.clear()
        console.print(f"removed {removed:,} entries of workspace {cache.workspace!r}")


@app.command()
def doctor(
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Check each tier: reachable, latency, version, secret, breaker. Exit 1 if one is unusable."""
    cache = _open(workspace, tiers, secret, directory, check=False)
    import os

    secret_source = (
        "flag"
        if secret
        else (
            "LLMCACHE_SECRET"
            if os.environ.get("LLMCACHE_SECRET")
            else "generated (embedded tiers only)"
        )
    )
    table = Table(title=f"llmcache doctor: workspace {cache.workspace!r}, secret: {secret_source}")
    for column in ("tier", "reachable", "latency ms", "breaker", "details"):
        table.add_column(column)
    if cache.memory is not None:
        table.add_row("memory", "yes", "-", "closed", f"max {cache.memory.max_bytes:,} bytes")
    unusable = []
    for tier in cache.tiers:
        started = time.perf_counter()
        try:
            tier.backend.ping()
            reachable, latency = "yes", f"{(time.perf_counter() - started) * 1000:.2f}"
            details = ", ".join(f"{k}={v}" for k, v in _describe(tier.backend).items())
        except Exception as error:
            reachable, latency, details = "[red]NO[/]", "-", _one_line(error)
            unusable.append(tier.name)
        table.add_row(tier.name, reachable, latency, tier.state, details)
    console.print(table)
    cache.close()
    if unusable:
        errors.print(f"[bold red]unusable tier(s):[/] {', '.join(unusable)}")
        raise typer.Exit(1)


def _describe(backend: Any) -> dict[str, Any]:
    try:
        described = backend.describe()
    except Exception as error:
        return {"describe": _one_line(error)}
    return described if isinstance(described, dict) else {}


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="How many chat requests to make.")] = 300,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    html: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "llmcache-report.html"
    ),
    directory: Directory = None,
) -> None:
    """Run a realistic workload through a wrapped OpenAI client and report the savings."""
    from ._demo import run_demo

    run_demo(
        requests=requests, concurrency=concurrency, html=html, directory=directory, console=console
    )


def main() -> None:
    """Entry point of the `llmcache` script."""
    try:
        app()
    except (LLMCacheError, UsageError) as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
