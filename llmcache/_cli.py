"""The `llmcache` command line: inspect, report on, invalidate, clear, export and import a
cache.

Configured by the same LLMCACHE_* variables as the library, or by flags. Every failure the
user can meet (unknown tier URL, unreachable server, wrong token, missing secret, a bad
option, an HTML path that cannot be written, a demo API that refuses the key) is one line
on stderr and a non-zero exit, never a traceback: exit 2 for those, 1 for a failed check
(doctor) or an aborted confirmation, 130 on Ctrl-C. An unexpected error is one line too
(LLMCACHE_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ._cache import Cache
from ._config import env_settings
from ._errors import LLMCacheError
from ._render import Grid

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmcache",
    help="Inspect, report on, invalidate and clear an llmcache cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's shows every flag as taking a "<bool>" value.
    rich_markup_mode=None,
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


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"llmcache {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Inspect, report on, invalidate and clear an llmcache cache."""


def _open(
    workspace: str | None,
    tiers: str | None,
    secret: str | None,
    directory: Path | None,
    *,
    check: bool = True,
) -> Cache:
    if directory is not None:
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
        for tier in cache._tiers:
            try:
                tier.backend.ping()
            except Exception as error:
                raise UsageError(f"tier {tier.name} is unusable: {_one_line(error)}") from None
    return cache


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


_PUBLISH_WAIT_S = 5.0  # how long `llmcache invalidate` retries an unreachable shared tier


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


# Every command that opens a cache takes the same four options, declared once above as
# Annotated types (Workspace, Tiers, Secret, Directory). Typer reads a command's options from
# its own signature, so the four parameter lines repeat in each command on purpose.
@app.command()
def stats(
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Entries and bytes in each tier, and the ledger's calls and hits."""
    with _open(workspace, tiers, secret, directory) as cache:
        rows = [
            [
                tier.name,
                _num(tier.entries),
                _num(tier.bytes),
                "closed" if tier.name == "memory" else _tier_state(cache, tier.name),
            ]
            for tier in cache.stats().tiers
        ]
        console.print(
            Grid(
                f"llmcache workspace {cache.workspace!r}",
                ("tier", "entries", "bytes", "state"),
                rows,
                numeric=frozenset({1, 2}),
            ).table(console.width)
        )
        result = cache.report(since=0)
        console.print(result)
        _hint_if_empty(result.totals.calls, workspace, tiers, "stats")


def _tier_state(cache: Cache, name: str) -> str:
    return next((t.state for t in cache._tiers if t.name == name), "?")


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@app.command()
def report(
    # the four cache options, as in every command (see the note above `stats`)
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
    since: Annotated[
        str | None, typer.Option(help="From this day: YYYY-MM-DD, or a number of days back.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (every column).")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with the plot here.")
    ] = None,
) -> None:
    """Calls, hits, money spent and saved, time saved, by namespace and model."""
    if html is not None:
        html = writable_file(html, "--html")
    with _open(workspace, tiers, secret, directory) as cache:
        since_value: Any = int(since) if since is not None and since.isdigit() else since
        result = cache.report(since=since_value)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            console.print(result)
            _hint_if_empty(result.totals.calls, workspace, tiers, "report")
        if html is not None:
            write_html(result, html)
            errors.print(f"wrote {html}", highlight=False, soft_wrap=True)


def writable_file(path: Path, option: str) -> Path:
    """`path` if a file can be written there; else a UsageError that says why (checked
    before any work, so a long report or demo does not fail at its very end)."""
    try:
        is_folder, folder_exists = path.is_dir(), path.parent.is_dir()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise UsageError(f"{option} {path}: {error.strerror or error}") from None
    if is_folder:
        raise UsageError(
            f"{option} {path} is a folder: give a file name, e.g. {path / 'report.html'}"
        )
    folder = path.parent
    if not folder_exists:
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: the folder {folder} is not writable")
    return path


def write_html(report: Any, path: Path) -> None:
    try:
        report.to_html(path)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None


def _hint_if_empty(calls: int, workspace: str | None, tiers: str | None, command: str) -> None:
    """After `llmcache demo`, a plain `llmcache report` looks at the user's own (empty)
    workspace: point at the demo's, with the exact command."""
    if calls or workspace or tiers:
        return
    from ._demo import demo_folder, report_command

    folder = demo_folder()
    if (folder / "cache.sqlite3").exists():
        errors.print(
            f"no calls recorded here yet; the demo's are in its own workspace: "
            f"{report_command(folder, command)}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def invalidate(
    # the four cache options, as in every command (see the note above `stats`)
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace to invalidate.")],
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Make every entry of a namespace unreachable (O(1); other processes follow within 1 s)."""
    with _open(workspace, tiers, secret, directory) as cache:
        if not any(tier.backend.persistent for tier in cache._tiers):
            _fail(
                "no shared or persistent tier is configured, so no other process can see an "
                "invalidation made here: pass --tiers (or set LLMCACHE_TIERS)"
            )
        result = cache.invalidate(namespace)
        # This process exits at once, so an invalidation that only took locally would be lost:
        # give the shared tier a few watcher rounds to come back before saying it failed.
        deadline = time.monotonic() + _PUBLISH_WAIT_S
        while not result.published and time.monotonic() < deadline:
            time.sleep(0.1)
            if not cache.health().pending_invalidations:
                result = dataclasses.replace(result, published=True)
        if not result.published:
            _fail(
                f"could not reach the shared tier within {_PUBLISH_WAIT_S:.0f} s, so namespace "
                f"{namespace!r} was NOT invalidated; check `llmcache doctor` and run it again"
            )
        console.print(f"invalidated namespace {namespace!r} of workspace {cache.workspace!r}")


@app.command()
def clear(
    # the four cache options, as in every command (see the note above `stats`)
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete this workspace's entries from every tier (never anything else's)."""
    with _open(workspace, tiers, secret, directory) as cache:
        names = ", ".join(t.name for t in cache._tiers) or "memory"
        if not yes:
            if not sys.stdin.isatty():
                _fail("clear needs confirmation: run it in a terminal, or pass --yes")
            typer.confirm(
                f"Delete every entry of workspace {cache.workspace!r} from {names}?", abort=True
            )
        removed = cache.clear()
        console.print(f"removed {removed:,} entries of workspace {cache.workspace!r}")


BundleKey = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="LLMCACHE_BUNDLE_KEY",
        help="The bundle's key, as `llmcache export` printed it (default: LLMCACHE_BUNDLE_KEY).",
    ),
]


@app.command()
def export(
    # the four cache options, as in every command (see the note above `stats`)
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write.")],
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace to export (default: the default)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Seal it with this bundle key (default: a new random one)."),
    ] = None,
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Write a namespace's entries, their metadata and its ledger to one sealed bundle file."""
    output = writable_file(output, "--output")
    with _open(workspace, tiers, secret, directory) as cache:
        done = cache.export_bundle(output, namespace, key=key, progress=errors.is_terminal)
    cost = f"; they cost ${done.cost_usd:,.4f} to make" if done.cost_usd else ""
    console.print(
        f"exported {done.entries:,} entries of namespace {done.namespace!r} to {done.path} "
        f"({done.bytes:,} bytes{cost})",
        highlight=False,
        soft_wrap=True,
    )
    if not done.entries and not done.without_digest:
        errors.print(
            f"no live entries in namespace {done.namespace!r} of workspace "
            f"{cache.workspace!r}: check --namespace, --workspace, --tiers and --secret (the "
            f"secret they were recorded with)",
            highlight=False,
            soft_wrap=True,
        )
    if done.without_digest:
        console.print(
            f"left out {done.without_digest:,} entries recorded by an llmcache that did not "
            f"keep request digests: they cannot be matched in another workspace (record "
            f"them again to share them)",
            highlight=False,
            soft_wrap=True,
        )
    if key is None:
        console.print(
            "bundle key (give it to whoever imports the file, by another channel; it is "
            "stored nowhere):",
            highlight=False,
            soft_wrap=True,
        )
        print(done.key)


@app.command("import")
def import_(
    # the four cache options, as in every command (see the note above `stats`)
    bundle: Annotated[Path, typer.Argument(help="The bundle file (.llmc) to import.")],
    key: BundleKey = None,
    tier: Annotated[
        str | None,
        typer.Option("--tier", help="Import into this tier only (its URL, or e.g. 'disk')."),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace to import into (default: the bundle's)."),
    ] = None,
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Check a bundle whole, then load its entries into this workspace (idempotent)."""
    if not key:
        _fail("import needs the bundle's key: pass --key, or set LLMCACHE_BUNDLE_KEY")
    with _open(workspace, tiers, secret, directory) as cache:
        if not any(tier.backend.persistent for tier in cache._tiers):
            _fail(
                "no shared or persistent tier is configured, so what this command imports "
                "would vanish when it exits: pass --tiers (or set LLMCACHE_TIERS)"
            )
        done = cache.import_bundle(
            bundle, key, tier=tier, namespace=namespace, progress=errors.is_terminal
        )
    notes = [f"they cost ${done.cost_usd:,.4f} to make"] if done.cost_usd else []
    notes += [f"{done.expired:,} expired, left out"] if done.expired else []
    console.print(
        f"imported {done.entries:,} entries{' (' + '; '.join(notes) + ')' if notes else ''} "
        f"from workspace "
        f"{done.exported_from!r} into namespace {done.namespace!r} of workspace "
        f"{cache.workspace!r} ({', '.join(done.tiers)})",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def doctor(
    # the four cache options, as in every command (see the note above `stats`)
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
) -> None:
    """Check each tier: reachable, latency, version, secret, breaker. Exit 1 if one is unusable."""
    cache = _open(workspace, tiers, secret, directory, check=False)
    secret_source = (
        "flag"
        if secret
        else (
            "LLMCACHE_SECRET"
            if os.environ.get("LLMCACHE_SECRET")
            else "generated (embedded tiers only)"
        )
    )
    rows = []
    if cache.memory is not None:
        rows.append(["memory", "yes", "-", "closed", f"max {cache.memory.max_bytes:,} bytes"])
    unusable = []
    for tier in cache._tiers:
        started = time.perf_counter()
        try:
            tier.backend.ping()
            reachable, latency = "yes", f"{(time.perf_counter() - started) * 1000:.2f}"
            details = ", ".join(f"{k}={v}" for k, v in _describe(tier.backend).items())
        except Exception as error:
            reachable, latency, details = "NO", "-", _one_line(error)
            unusable.append(tier.name)
        rows.append([tier.name, reachable, latency, tier.state, details])
    title = f"llmcache doctor: workspace {cache.workspace!r}, secret: {secret_source}"
    headers = ("tier", "reachable", "latency ms", "breaker", "details")
    console.print(Grid(title, headers, rows, numeric=frozenset({2})).table(console.width))
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
    provider: Annotated[
        str,
        typer.Option(
            help="Whose client the workload goes through: openai, anthropic (Claude models "
            "through cache.wrap(Anthropic()); the real API when ANTHROPIC_API_KEY is set) "
            "or both."
        ),
    ] = "openai",
) -> None:
    """Run a realistic workload through a wrapped OpenAI (or Anthropic) client and report the
    savings."""
    from ._demo import PROVIDERS, DemoFailed, run_demo

    if provider not in PROVIDERS:
        raise UsageError(f"--provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    html = writable_file(html, "--html")
    try:
        run_demo(
            requests=requests,
            concurrency=concurrency,
            html=html,
            directory=directory,
            console=console,
            provider=provider,
        )
    except DemoFailed as error:
        raise UsageError(str(error)) from None


@app.command()
def dashboard(
    # the four cache options, as in every command (see the note above `stats`)
    workspace: Workspace = None,
    tiers: Tiers = None,
    secret: Secret = None,
    directory: Directory = None,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; any but loopback needs a token."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8765,
    generate_token: Annotated[
        bool,
        typer.Option(
            "--generate-token",
            help="Require a new random token, printed in the address to open "
            "(else LLMCACHE_DASHBOARD_TOKEN, when set, is required).",
        ),
    ] = False,
    refresh: Annotated[float, typer.Option(help="Seconds between the page's updates.")] = 2.0,
) -> None:
    """A live page of the workspace's savings and tiers, and Prometheus /metrics, until Ctrl-C."""
    from .dashboard._server import TOKEN_VARIABLE, bind, check_token, is_loopback, new_token

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        _fail("the dashboard needs starlette and uvicorn: pip install 'llmcache[dashboard]'")
    if not refresh > 0:
        _fail(f"--refresh takes a number of seconds above 0, not {refresh}")
    from_env = os.environ.get(TOKEN_VARIABLE) or None
    token = new_token() if generate_token else from_env
    if from_env is not None and not generate_token:
        check_token(from_env)
    if token is None and not is_loopback(host):
        _fail(
            f"--host {host} is not a loopback address, so anyone who can reach it could read "
            f"the dashboard: set {TOKEN_VARIABLE} or pass --generate-token"
        )
    from .dashboard import serve

    with _open(workspace, tiers, secret, directory) as cache:
        if not any(tier.backend.persistent for tier in cache._tiers):
            errors.print(
                "note: no shared or persistent tier is configured, so the dashboard sees only "
                "its own process's calls: pass --tiers (or set LLMCACHE_TIERS)",
                highlight=False,
                soft_wrap=True,
            )
        binding = bind(host, port)
        address = binding.url + (f"?token={token}" if generate_token else "")
        console.print(
            f"llmcache dashboard of workspace {cache.workspace!r}: {address}",
            soft_wrap=True,
            highlight=False,
        )
        if token is not None and not generate_token:
            console.print(f"(requests must carry the token in {TOKEN_VARIABLE})", highlight=False)
        console.print(
            f"Prometheus metrics: {binding.url}metrics. Ctrl-C stops it.",
            soft_wrap=True,
            highlight=False,
        )
        # uvicorn stops gracefully on Ctrl-C, then raises it again here: a clean stop.
        with contextlib.suppress(KeyboardInterrupt):
            serve(cache, binding=binding, token=token, refresh_s=refresh)
        console.print("dashboard stopped", highlight=False)


_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def main() -> None:
    """Entry point of the `llmcache` script: every failure is one line on stderr."""
    args = sys.argv[1:] or ["--help"]
    try:
        code = app(args=args, prog_name="llmcache", standalone_mode=False)
    except (LLMCacheError, UsageError) as error:
        _exit_with(str(error), 2)
    except typer.Abort:  # a declined confirmation, or Ctrl-C at a prompt
        _exit_with("aborted", 1)
    except KeyboardInterrupt:  # click's own handling may let it through
        _exit_with("interrupted", 130)
    except Exception as error:
        if _is_bad_command_line(error):
            message = error.format_message()  # type: ignore[attr-defined]
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "llmcache"
            _exit_with(f"{message} (see: {command} --help)", 2)
        if os.environ.get("LLMCACHE_DEBUG"):
            raise
        _exit_with(f"unexpected {_one_line(error)} (LLMCACHE_DEBUG=1 shows where)", 1)
    if code == _INTERRUPTED:  # typer turns Ctrl-C into this exit code, silently
        _exit_with("interrupted", _INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _is_bad_command_line(error: Exception) -> bool:
    """click's usage errors (an unknown option, a bad value), whichever click typer uses
    (its own copy since typer 0.20, the click package before)."""
    return callable(getattr(error, "format_message", None)) and hasattr(error, "exit_code")


def _exit_with(message: str, code: int) -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
