"""`llmcache demo`: a realistic workload through a wrapped OpenAI client, and its savings.

A few hundred chat requests, drawn with repeats from a prompt set (as a team's notebooks and
agents repeat themselves), several in flight at once, through `cache.wrap(OpenAI())`.
Against the real API when OPENAI_API_KEY is set, otherwise against the local
OpenAI-compatible server from `llmcache.testing`, and it says which. The cache lives in a
persistent folder, so a second run is served from disk and says so.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._cache import Cache
from ._disk import default_directory
from ._info import info

__all__ = ["WORKLOAD", "DemoResult", "run_demo"]

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
_SYSTEM = "You are a concise assistant. Answer in at most three sentences."


@dataclass
class DemoResult:
    """What one demo run did (the persistent report covers every run)."""

    mode: str
    requests: int
    real_calls: int = 0
    hits_by_tier: dict[str, int] = field(default_factory=dict)
    from_earlier_runs: int = 0  # hits on entries stored before this run started
    saved_usd: float = 0.0
    saved_s: float = 0.0
    wall_s: float = 0.0
    html: Path | None = None

    @property
    def hits(self) -> int:
        return sum(self.hits_by_tier.values())


def _draw(requests: int, seed: int) -> list[tuple[str, str, str]]:
    """Requests with repeats: popular prompts come up far more often (a Zipf-like mix)."""
    rng = random.Random(seed)
    pool = [(ns, model, prompt) for ns, model, prompts in WORKLOAD for prompt in prompts]
    weights = [1.0 / (1 + (i % 12)) for i in range(len(pool))]
    return rng.choices(pool, weights=weights, k=requests)


def _client(console: Console) -> tuple[Any, str, Any]:
    """A real OpenAI client when OPENAI_API_KEY is set, else one on the local server."""
    from openai import OpenAI

    if os.environ.get("OPENAI_API_KEY"):
        console.print("[bold]mode:[/] the real OpenAI API (OPENAI_API_KEY is set)")
        return OpenAI(), "real OpenAI API", None
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
        f"{server.base_url} (set OPENAI_API_KEY to use the real API)"
    )
    return OpenAI(base_url=server.base_url, api_key="demo", max_retries=0), "local server", server


def run_demo(
    *,
    requests: int = 300,
    concurrency: int = 8,
    html: Path = Path("llmcache-report.html"),
    directory: Path | None = None,
    console: Console | None = None,
    seed: int = 7,
) -> DemoResult:
    console = console or Console()
    folder = Path(directory) if directory else default_directory() / "demo"
    cache = Cache(workspace="demo", tiers=["memory", f"disk://{folder}"])
    raw_client, mode, server = _client(console)
    client = cache.wrap(raw_client)
    result = DemoResult(mode=mode, requests=requests)
    console.print(f"[bold]cache:[/] {cache!r} in {folder}")

    def one(job: tuple[str, str, str]) -> Any:
        namespace, model, prompt = job
        import llmcache

        with llmcache.options(namespace=namespace):
            return client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": _SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                max_tokens=48,
                temperature=0,
            )

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
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                for response in pool.map(one, _draw(requests, seed)):
                    _tally(result, response, run_started)
                    progress.advance(task)
    finally:
        if server is not None:
            server.stop()
    result.wall_s = time.perf_counter() - started
    _summarise(console, cache, result)
    report = cache.report(by=("namespace", "model"))
    console.print(str(report), highlight=False, soft_wrap=True)
    report.to_html(html)
    result.html = html
    console.print(f"[bold]HTML report with the savings plot:[/] {html.resolve()}")
    cache.close()
    return result


def _tally(result: DemoResult, response: Any, run_started: float) -> None:
    described = info(response)
    if described is None or not described.hit:
        result.real_calls += 1
        return
    if described.age_s is not None and time.time() - described.age_s < run_started:
        result.from_earlier_runs += 1
    tier = described.tier or "?"
    result.hits_by_tier[tier] = result.hits_by_tier.get(tier, 0) + 1
    result.saved_usd += described.saved_cost_usd or 0.0
    result.saved_s += described.saved_time_s or 0.0


def _summarise(console: Console, cache: Cache, result: DemoResult) -> None:
    tiers = ", ".join(f"{n} from {t}" for t, n in sorted(result.hits_by_tier.items())) or "none"
    rate = result.hits / result.requests if result.requests else 0.0
    console.print(
        f"\n[bold]this run:[/] {result.requests} requests in {result.wall_s:.1f} s: "
        f"{result.real_calls} real calls, {result.hits} served by the cache ({rate:.0%}; {tiers}); "
        f"saved ${result.saved_usd:.4f} and {result.saved_s:.1f} s of model time"
    )
    if result.from_earlier_runs:
        console.print(
            f"[bold green]{result.from_earlier_runs} of {result.requests} responses were "
            f"stored by an earlier run[/] and served from the persistent tier "
            f"(then memory): this run made {result.real_calls} real calls."
        )
    else:
        console.print(
            "first run on this cache folder: run `llmcache demo` again and it is served "
            "from the persistent tier"
        )
