"""Test and demo helpers shipped with llmcache.

* `FakeOpenAIServer`: a local OpenAI-compatible HTTP server (chat completions, responses,
  embeddings, streaming) with request counters and configurable latency, for tests and demos
  that must not call the real API.
* `FakeAnthropicServer`: the same for Anthropic's API (messages with streaming, thinking, tool
  use and prompt-cache usage; count_tokens; models). It needs the `anthropic` extra and is
  imported on first use, so this package still imports without it.
* `count_calls` / `assert_calls`: check how many real calls and hits a block of code made.
"""

from typing import TYPE_CHECKING, Any

from llmcache.testing._assertions import CallCounts, assert_calls, count_calls
from llmcache.testing._openai_server import FakeOpenAIServer

if TYPE_CHECKING:
    from llmcache.testing._anthropic_server import FakeAnthropicServer

__all__ = ["CallCounts", "FakeAnthropicServer", "FakeOpenAIServer", "assert_calls", "count_calls"]


def __getattr__(name: str) -> Any:
    """`FakeAnthropicServer`, imported when first asked for: it needs the `anthropic` SDK."""
    if name != "FakeAnthropicServer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from llmcache.testing._anthropic_server import FakeAnthropicServer

    globals()[name] = FakeAnthropicServer
    return FakeAnthropicServer
