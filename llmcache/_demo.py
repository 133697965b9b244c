"""`llmcache demo`: a realistic workload through a wrapped OpenAI client, and its savings.

A few hundred chat requests, drawn with repeats from a prompt set (as a team's notebooks and
agents repeat themselves), several in flight at once, through `cache.wrap(OpenAI())`.
Against the API OPENAI_BASE_URL names (the real OpenAI API by default) when OPENAI_API_KEY
is set, otherwise against the local OpenAI-compatible server from `llmcache.testing`, and it
says which URL. The cache lives in a persistent folder (workspace "demo"), so a second run
is served from disk and says so; the demo ends with the commands that show its report again
and open the live dashboard on its data.

``provider="anthropic"`` (``llmcache demo --provider anthropic``) sends the same workload to
Claude models through `cache.wrap(Anthropic())`: the API ANTHROPIC_BASE_URL names (the real
Anthropic API by default) when ANTHROPIC_API_KEY is set, else the local Anthropic-compatible
server. Its system prompt carries a ``cache_control`` marker, so Anthropic's own prompt
cache is used and the report shows its cache reads and writes. ``provider="both"`` mixes the
two in one run. Both write to the same workspace, so the report shows the models of every
provider run so far side by side.

A failing API (a bad key, an unreachable URL) stops the demo after its first request with one
line that says what to check (`DemoFailed`), not a traceback per request.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._cache import Cache
from ._disk import default_directory
from ._info import info
from ._render import format_seconds, format_usd

__all__ = [
    "PROVIDERS",
    "WORKLOAD",
    "DemoFailed",
    "DemoResult",
    "demo_folder",
    "report_command",
    "run_demo",
]

WORKSPACE = "demo"

# (namespace, model, prompts): two teams, two models, prompts that recur.
WORKLOAD: list[tuple[str, str, list[str]]] = [
    (
        "support",
        "gpt-4o-mini",
        [
            "How do I reset my password?",
            "Why was my card declined?",
            "How can I export my invoices as CSV?",
            "What is your refund policy for annual plans?",
            "How do I add a teammate to my workspace?",
            "Can I change the email address on my account?",
            "Why am I not receiving notification emails?",
            "How do I cancel my subscription?",
            "Is there a discount for non-profit organisations?",
            "How do I enable two-factor authentication?",
            "Where can I find my API usage for this month?",
            "How do I move a project to another workspace?",
        ],
    ),
    (
        "research",
        "gpt-4.1-mini",
        [
            "Summarise the trade-offs of retrieval-augmented generation.",
            "Explain KV-cache reuse in transformer inference in three sentences.",
            "What are common failure modes of LLM-as-a-judge evaluations?",
            "Compare semantic caching and exact-match caching for LLM calls.",
            "List three ways to reduce hallucinations in summarisation.",
            "What is speculative decoding and when does it help?",
            "Give a short definition of prompt injection with an example.",
            "How does temperature affect the diversity of sampled outputs?",
            "Explain mixture-of-experts routing to a product manager.",
            "What should a model card contain?",
        ],
    ),
]
DEMO_PORT = 47821
ANTHROPIC_DEMO_PORT = 47822  # another server, another base URL: its own entries
# The Claude model each namespace of the workload asks (the OpenAI models' counterparts).
CLAUDE_MODELS = {"support": "claude-haiku-4-5", "research": "claude-sonnet-4-6"}
PROVIDERS = ("openai", "anthropic", "both")
_SYSTEM = "You are a concise assistant. Answer in at most three sentences."

# One request of the workload: (provider, namespace, model, prompt).
Job = tuple[str, str, str, str]


class DemoFailed(Exception):
    """The demo cannot go on (the API refused or could not be reached); one line to print."""


def demo_folder(directory: Path | None = None) -> Path:
    """Where the demo's cache lives: `directory`, else "demo" in the default cache folder."""
    return Path(directory) if directory else default_directory() / "demo"


def report_command(folder: Path, command: str = "report") -> str:
    """The exact `llmcache` command that shows the demo's cache (its own workspace and
    folder, whatever LLMCACHE_TIERS or LLMCACHE_WORKSPACE say)."""
    return f"llmcache {command} --workspace {WORKSPACE} --tiers {shlex.quote(f'disk://{folder}')}"


@dataclass
class DemoResult:
    """What one demo run did (the persistent report covers every run)."""

    mode: str
    requests: int
    provider: str = "openai"
    real_calls: int = 0
    hits_by_tier: dict[str, int] = field(default_factory=dict)
    from_earlier_runs: int = 0  # hits on entries stored before this run started
    saved_usd: float = 0.0
    unpriced_hits: int = 0  # hits whose model has no known price: saved an unknown amount
    saved_s: float = 0.0
    wall_s: float = 0.0
    html: Path | None = None

    @property
    def hits(self) -> int:
        return sum(self.hits_by_tier.values())


def _draw(requests: int, seed: int, providers: tuple[str, ...] = ("openai",)) -> list[Job]:
    """Requests with repeats: popular prompts come up far more often (a Zipf-like mix)."""
    rng = random.Random(seed)
    pool = [
        (provider, ns, _model(provider, ns, model), prompt)
        for provider in providers
        for ns, model, prompts in WORKLOAD
        for prompt in prompts
    ]
    weights = [1.0 / (1 + (i % 12)) for i in range(len(pool))]
    return rng.choices(pool, weights=weights, k=requests)


def _model(provider: str, namespace: str, openai_model: str) -> str:
    return CLAUDE_MODELS[namespace] if provider == "anthropic" else openai_model


def _client(console: Console) -> tuple[Any, str, Any]:
    """A client of OPENAI_BASE_URL (default: OpenAI's) when OPENAI_API_KEY is set, else one
    of the local server. Says which URL it uses."""
    from openai import OpenAI

    if os.environ.get("OPENAI_API_KEY"):
        client = OpenAI()
        url = str(client.base_url).rstrip("/")
        where = "the OpenAI API" if url == _OPENAI_URL else "the OpenAI-compatible API"
        console.print(f"[bold]mode:[/] {where} at {url} (OPENAI_API_KEY is set)", soft_wrap=True)
        return client, f"{where} at {url}", None
    from .testing import FakeOpenAIServer

    # The base URL is part of every key (two endpoints must not share entries), so the local
    # server listens on the same port each run and a second run hits what the first stored.
    try:
        server = FakeOpenAIServer(
            latency_per_token=0.004, base_latency=0.15, port=DEMO_PORT
        ).start()
    except OSError:
        console.print(f"[yellow]port {DEMO_PORT} is busy: using another; a rerun will miss[/]")
        server = FakeOpenAIServer(latency_per_token=0.004, base_latency=0.15).start()
    console.print(
        "[bold]mode:[/] local OpenAI-compatible server at "
        f"{server.base_url} (set OPENAI_API_KEY to use the real API)",
        soft_wrap=True,
    )
    return OpenAI(base_url=server.base_url, api_key="demo", max_retries=0), "local server", server


_OPENAI_URL = "https://api.openai.com/v1"
_ANTHROPIC_URL = "https://api.anthropic.com"


def _anthropic_client(console: Console) -> tuple[Any, str, Any]:
    """A client of ANTHROPIC_BASE_URL (default: Anthropic's) when ANTHROPIC_API_KEY is set,
    else one of the local Anthropic-compatible server. Says which URL it uses."""
    from anthropic import Anthropic

    if os.environ.get("ANTHROPIC_API_KEY"):
        client = Anthropic()
        url = str(client.base_url).rstrip("/")
        where = "the Anthropic API" if url == _ANTHROPIC_URL else "the Anthropic-compatible API"
        console.print(f"[bold]mode:[/] {where} at {url} (ANTHROPIC_API_KEY is set)", soft_wrap=True)
        return client, f"{where} at {url}", None
    from .testing import FakeAnthropicServer

    # On a port of its own, the same each run (the base URL is keyed), as the OpenAI one.
    try:
        server = FakeAnthropicServer(
            latency_per_token=0.004, base_latency=0.15, port=ANTHROPIC_DEMO_PORT
        ).start()
    except OSError:
        console.print(
            f"[yellow]port {ANTHROPIC_DEMO_PORT} is busy: using another; a rerun will miss[/]"
        )
        server = FakeAnthropicServer(latency_per_token=0.004, base_latency=0.15).start()
    console.print(
        "[bold]mode:[/] local Anthropic-compatible server at "
        f"{server.base_url} (set ANTHROPIC_API_KEY to use the real API)",
        soft_wrap=True,
    )
    client = Anthropic(base_url=server.base_url, api_key="demo", max_retries=0)
    return client, "local Anthropic server", server


def _ask_openai(client: Any, model: str, prompt: str) -> Any:
    return client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": prompt},
        ],
        max_tokens=48,
        temperature=0,
    )


def _ask_claude(client: Any, model: str, prompt: str) -> Any:
    # The system prompt is marked for Anthropic's prompt cache (the API caches prompts from
    # 1,024 tokens on; the local server caches any): the marker is not part of llmcache's key.
    system = [{"type": "text", "text": _SYSTEM, "cache_control": {"type": "ephemeral"}}]
    return client.messages.create(
        model=model,
        system=system,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=48,
    )


@dataclass
class _Endpoint:
    """One provider's side of a demo run: its wrapped client, what it says it is, its local
    server (None for a real API) and how it asks a question."""

    provider: str
    client: Any
    mode: str
    server: Any
    ask: Any


def _endpoints(cache: Cache, console: Console, providers: tuple[str, ...]) -> list[_Endpoint]:
    endpoints: list[_Endpoint] = []
    try:
        for provider in providers:
            make, ask = (
                (_client, _ask_openai) if provider == "openai" else (_anthropic_client, _ask_claude)
            )
            raw_client, mode, server = make(console)
            # The local servers imitate these providers, and are priced as they are.
            client = cache.wrap(raw_client, provider=provider)
            endpoints.append(_Endpoint(provider, client, mode, server, ask))
    except BaseException:
        _stop(endpoints)
        raise
    return endpoints


def _stop(endpoints: list[_Endpoint]) -> None:
    for endpoint in endpoints:
        if endpoint.server is not None:
            endpoint.server.stop()


def _api_errors(provider: str) -> Any:
    """The SDK module whose APIError, APIConnectionError and APIStatusError `provider`'s
    client raises."""
    if provider == "anthropic":
        import anthropic

        return anthropic
    import openai

    return openai


def _failure(error: Exception, mode: str, provider: str = "openai") -> DemoFailed:
    """One line for an API error: what happened, and what to check."""
    sdk = _api_errors(provider)
    variable = "ANTHROPIC" if provider == "anthropic" else "OPENAI"
    hint = f"or unset {variable}_API_KEY to run against the local server"
    if isinstance(error, sdk.APIConnectionError):  # includes timeouts
        cause = error.__cause__ or error
        return DemoFailed(
            f"cannot reach {mode}: {type(cause).__name__}: {_first_line(cause)}; "
            f"check {variable}_BASE_URL, {hint}"
        )
    if isinstance(error, sdk.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        # Anthropic nests its error: {"type": "error", "error": {"type": ..., "message": ...}}
        nested = body.get("error")
        details: dict[str, Any] = nested if isinstance(nested, dict) else body
        code = details.get("code") or details.get("type") or ""
        message = details.get("message") or _first_line(error)
        check = (
            f"check {variable}_API_KEY" if error.status_code in (401, 403) else "see the message"
        )
        return DemoFailed(
            f"{mode} answered {error.status_code} {code}: {_first_line(message)}; {check}, {hint}"
        )
    return DemoFailed(f"{mode} failed: {type(error).__name__}: {_first_line(error)}")


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0][:300] if lines else ""


def run_demo(
    *,
    requests: int = 300,
    concurrency: int = 8,
    html: Path = Path("llmcache-report.html"),
    directory: Path | None = None,
    console: Console | None = None,
    seed: int = 7,
    provider: str = "openai",
) -> DemoResult:
    """Run the workload through `provider`'s client ("openai", "anthropic" or "both")."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    providers = ("openai", "anthropic") if provider == "both" else (provider,)
    console = console or Console()
    folder = demo_folder(directory)
    # LLMCACHE_SECRET, when set, signs the demo's entries too: the printed report command,
    # run in the same environment, then reads them.
    cache = Cache(
        workspace=WORKSPACE,
        tiers=["memory", f"disk://{folder}"],
        secret=os.environ.get("LLMCACHE_SECRET") or None,
    )
    endpoints = _endpoints(cache, console, providers)
    by_provider = {endpoint.provider: endpoint for endpoint in endpoints}
    mode = " and ".join(e.mode for e in endpoints)
    result = DemoResult(mode=mode, requests=requests, provider=provider)
    console.print(f"[bold]cache:[/] {cache!r} in {folder}", soft_wrap=True)

    def one(job: Job) -> Any:
        provider, namespace, model, prompt = job
        import llmcache

        endpoint = by_provider[provider]
        try:
            with llmcache.options(namespace=namespace):
                return endpoint.ask(endpoint.client, model, prompt)
        except _api_errors(provider).APIError as error:
            raise _failure(error, endpoint.mode, provider) from error

    started, run_started = time.perf_counter(), time.time()
    try:
        with Progress(
            TextColumn("[bold]requests"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("requests", total=requests)
            jobs = _draw(requests, seed, providers)
            _run(one, jobs, concurrency, progress, task, result, run_started)
    except BaseException:
        cache.close()  # what was paid for stays stored and counted
        raise
    finally:
        _stop(endpoints)
    result.wall_s = time.perf_counter() - started
    _summarise(console, cache, result)
    report = cache.report(by=("namespace", "model"))
    console.print(report)
    report.to_html(html)
    result.html = html
    console.print(f"[bold]HTML report with the savings plot:[/] {html.resolve()}", soft_wrap=True)
    console.print(
        f"[bold]see this report again:[/] {report_command(folder)}", soft_wrap=True, highlight=False
    )
    console.print(
        f"[bold]watch it live in a browser:[/] {report_command(folder, 'dashboard')}",
        soft_wrap=True,
        highlight=False,
    )
    cache.close()
    return result


def _run(
    one: Any,
    jobs: list[Job],
    concurrency: int,
    progress: Progress,
    task: Any,
    result: DemoResult,
    run_started: float,
) -> None:
    """The first request alone (a bad key or URL fails once, not once per request), then
    the rest `concurrency` at a time; the first API error (a `DemoFailed`, from `one`)
    cancels what has not started."""
    for response in map(one, jobs[:1]):
        _tally(result, response, run_started)
        progress.advance(task)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one, job) for job in jobs[1:]]
        try:
            for future in concurrent.futures.as_completed(futures):
                _tally(result, future.result(), run_started)
                progress.advance(task)
        finally:
            for future in futures:
                future.cancel()


def _tally(result: DemoResult, response: Any, run_started: float) -> None:
    described = info(response)
    if described is None or not described.hit:
        result.real_calls += 1
        return
    if described.age_s is not None and time.time() - described.age_s < run_started:
        result.from_earlier_runs += 1
    tier = described.tier or "?"
    result.hits_by_tier[tier] = result.hits_by_tier.get(tier, 0) + 1
    if described.saved_cost_usd is None:
        result.unpriced_hits += 1  # never counted as $0 saved
    else:
        result.saved_usd += described.saved_cost_usd
    result.saved_s += described.saved_time_s or 0.0


def _summarise(console: Console, cache: Cache, result: DemoResult) -> None:
    tiers = ", ".join(f"{n} from {t}" for t, n in sorted(result.hits_by_tier.items())) or "none"
    rate = result.hits / result.requests if result.requests else 0.0
    unpriced = (
        f" (+ {result.unpriced_hits} hits of unpriced models)" if result.unpriced_hits else ""
    )
    console.print(
        f"\n[bold]this run:[/] {result.requests} requests in {result.wall_s:.1f} s: "
        f"{result.real_calls} real calls, {result.hits} served by the cache ({rate:.0%}; {tiers}); "
        f"saved {format_usd(result.saved_usd)}{unpriced} and {format_seconds(result.saved_s)} of "
        f"model time"
    )
    if result.from_earlier_runs:
        console.print(
            f"[bold green]{result.from_earlier_runs} of {result.requests} responses were "
            f"stored by an earlier run[/] and served from the persistent tier "
            f"(then memory): this run made {result.real_calls} real calls."
        )
    else:
        again = "llmcache demo" + (
            "" if result.provider == "openai" else f" --provider {result.provider}"
        )
        console.print(
            f"first run on this cache folder: run `{again}` again and it is served "
            "from the persistent tier"
        )
