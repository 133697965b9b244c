"""A provider adapter built from `llmcache.ext` alone: `cache.wrap(client)` for a toy SDK.

The "SDK" here is `ToyClient`, defined below: `complete`, `acomplete` and `stream`, each a
paid and slow call. The adapter caches all three the way our OpenAI adapter does (a call site
per endpoint, kept with the cache), and reports what each real call used and cost through
`usage_of`. README: "Writing a provider adapter".

python examples/provider_adapter.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import llmcache
from llmcache.ext import MISS, Cache, CallSite, Usage, extension_state, register_provider

PRICE_PER_TOKEN_USD = 0.000002  # the toy vendor's own price list: one price per token


# -- the vendor's SDK (stands in for a real one) -----------------------------------------------
@dataclasses.dataclass
class Reply:
    """The SDK's response type; `usage` has the vendor's own field names."""

    text: str
    model: str
    finished: bool  # False when max_tokens cut the answer short
    usage: dict[str, int]


class ToyClient:
    """A vendor's client: every method is a real (paid, slow) call; `calls` counts them."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def complete(
        self, *, model: str, prompt: str, max_tokens: int = 100, timeout: float = 30.0
    ) -> Reply:
        self._count()
        time.sleep(0.05)  # the network and the model
        return _answer(model, prompt, max_tokens)

    async def acomplete(self, *, model: str, prompt: str, timeout: float = 30.0) -> Reply:
        self._count()
        await asyncio.sleep(0.05)
        return _answer(model, prompt, 100)

    def stream(self, *, model: str, prompt: str) -> Iterator[str]:
        self._count()
        yield from prompt.upper().split()

    def _count(self) -> None:
        with self._lock:
            self.calls += 1


def _answer(model: str, prompt: str, max_tokens: int) -> Reply:
    """The toy model: the prompt in capitals, cut at `max_tokens` words."""
    words = prompt.upper().split()
    return Reply(
        text=" ".join(words[:max_tokens]),
        model=model,
        finished=len(words) <= max_tokens,
        usage={"in": len(words), "out": min(len(words), max_tokens)},
    )


# -- the adapter --------------------------------------------------------------------------------
@dataclasses.dataclass
class StreamRecording:
    """A completed stream as the cache stores it, with a `usage` so that it is priced."""

    chunks: list[str]
    model: str
    usage: dict[str, int]


class Sites:
    """One call site per cached endpoint, made once per cache (see `extension_state`)."""

    def __init__(self, cache: Cache) -> None:
        self.complete = cache.site("toy.complete", returns=Reply, provider="toyvendor")
        self.stream = cache.site("toy.stream", returns=StreamRecording, provider="toyvendor")


class CachedToyClient:
    """What `cache.wrap(ToyClient())` returns: the same methods, cached."""

    def __init__(self, cache: Cache, client: ToyClient) -> None:
        self._client = client
        self._sites = extension_state(cache, "toy_adapter", lambda: Sites(cache))

    def complete(
        self, *, model: str, prompt: str, max_tokens: int = 100, timeout: float = 30.0
    ) -> Reply:
        # The request holds what changes the answer; `timeout` does not, so it is not keyed.
        request = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
        return self._sites.complete.call(
            request,
            lambda: self._client.complete(
                model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout
            ),
            keep=lambda reply: reply.finished,  # a cut-short answer is returned, never stored
        )

    async def acomplete(self, *, model: str, prompt: str, timeout: float = 30.0) -> Reply:
        request = {"model": model, "prompt": prompt, "max_tokens": 100}  # shared with complete
        return await self._sites.complete.acall(
            request, lambda: self._client.acomplete(model=model, prompt=prompt, timeout=timeout)
        )

    def stream(self, *, model: str, prompt: str) -> Iterator[str]:
        # A stream ends after the call returns, so the adapter stores it itself: claim the
        # request (a hit, or the lead of the one real call), put the completed recording,
        # then release the identical calls waiting for it.
        site: CallSite = self._sites.stream
        request = {"model": model, "prompt": prompt}
        recorded, release = site.claim(request)
        try:
            if recorded is not MISS:
                yield from recorded.chunks
                return
            started = time.perf_counter()
            chunks: list[str] = []
            for chunk in self._client.stream(model=model, prompt=prompt):
                chunks.append(chunk)
                yield chunk
            tokens = {"in": len(chunks), "out": len(chunks)}  # this toy SDK: a word is a token
            site.put(
                request,
                StreamRecording(chunks, model, tokens),
                latency_s=time.perf_counter() - started,
            )
        finally:
            release()


class ToyProvider:
    """Registered with `register_provider` (an installed adapter uses an entry point)."""

    name = "toyvendor"

    def can_wrap(self, client: Any) -> bool:
        return isinstance(client, ToyClient)

    def wrap(self, cache: Cache, client: Any, **options: Any) -> CachedToyClient:
        if options:
            raise TypeError(f"the toy adapter takes no options, got {sorted(options)}")
        return CachedToyClient(cache, client)

    def usage_of(self, result: Any) -> Usage | None:
        """What a real call used: asked about every miss's result that has a `usage`."""
        if not isinstance(result, Reply | StreamRecording):
            return None  # another provider's result (or a user's own)
        tokens_in, tokens_out = result.usage["in"], result.usage["out"]
        return Usage(
            model=result.model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=(tokens_in + tokens_out) * PRICE_PER_TOKEN_USD,  # not in genai-prices
        )


# -- using it -----------------------------------------------------------------------------------
def describe(result: Any) -> str:
    info = llmcache.info(result)
    if info is None:
        return "not described"
    return f"hit from {info.tier}" if info.hit else "miss"


def main() -> None:
    register_provider(ToyProvider())
    cache = llmcache.Cache(workspace="provider-example", tiers=["memory"])
    sdk = ToyClient()
    client = cache.wrap(sdk)

    for label in ("first", "second"):
        reply = client.complete(model="toy-1", prompt="why cache llm calls")
        print(f"{label} call: {describe(reply)}, {reply.text!r}, real calls {sdk.calls}")
    reply = client.complete(model="toy-1", prompt="why cache llm calls", timeout=5)
    print(f"another timeout: {describe(reply)}, real calls {sdk.calls}")

    before = sdk.calls
    barrier = threading.Barrier(8)

    def ask_at_once() -> None:
        barrier.wait()
        client.complete(model="toy-1", prompt="one question from eight threads")

    threads = [threading.Thread(target=ask_at_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"8 threads, same question: {sdk.calls - before} real call")

    async def ask_from_tasks() -> list[Reply]:
        question = "one question from five tasks"
        return await asyncio.gather(
            *(client.acomplete(model="toy-1", prompt=question) for _ in range(5))
        )

    before = sdk.calls
    asyncio.run(ask_from_tasks())
    print(f"5 tasks, same question: {sdk.calls - before} real call")

    before = sdk.calls
    for _ in range(2):
        cut = client.complete(model="toy-1", prompt="a long question cut short", max_tokens=2)
    print(f"cut short twice ({cut.text!r}): {sdk.calls - before} real calls, nothing kept")

    for label in ("first", "second"):
        words = list(client.stream(model="toy-1", prompt="stream me please"))
        print(f"{label} stream: {words}, real calls {sdk.calls}")

    cache.flush()
    totals = cache.report().totals
    print(
        f"ledger: {totals.misses} real calls, {totals.hits} hits, "
        f"spent ${totals.spent_usd:.6f}, saved ${totals.saved_usd:.6f}"
    )
    cache.close()


if __name__ == "__main__":
    main()
