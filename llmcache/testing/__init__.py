"""Test and demo helpers shipped with llmcache.

* `FakeOpenAIServer`: a local OpenAI-compatible HTTP server (chat completions, responses,
  embeddings, streaming) with request counters and configurable latency, for tests and demos
  that must not call the real API. It needs the `openai` extra.
* `FakeAnthropicServer`: the same for Anthropic's API (messages with streaming, thinking, tool
  use and prompt-cache usage; count_tokens; models). It needs the `anthropic` extra.
* `count_calls` / `assert_calls`: check how many real calls and hits a block of code made.

Both servers are imported on first use, so this package imports without either SDK.
"""

import importlib
from typing import TYPE_CHECKING, Any

from llmcache.testing._assertions import CallCounts, assert_calls, count_calls

if TYPE_CHECKING:
    from llmcache.testing._anthropic_server import FakeAnthropicServer
    from llmcache.testing._openai_server import FakeOpenAIServer

__all__ = ["CallCounts", "FakeAnthropicServer", "FakeOpenAIServer", "assert_calls", "count_calls"]

_LAZY = {  # a server -> its module, which imports the server's SDK
    "FakeAnthropicServer": "llmcache.testing._anthropic_server",
    "FakeOpenAIServer": "llmcache.testing._openai_server",
}


def __getattr__(name: str) -> Any:
    """A server, imported when first asked for: it needs its SDK."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    server = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = server
    return server
