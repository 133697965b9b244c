"""Test and demo helpers shipped with llmcache.

* `FakeOpenAIServer`: a local OpenAI-compatible HTTP server (chat completions, responses,
  embeddings, streaming) with request counters and configurable latency, for tests and demos
  that must not call the real API.
* `count_calls` / `assert_calls`: check how many real calls and hits a block of code made.
"""

from llmcache.testing._assertions import CallCounts, assert_calls, count_calls
from llmcache.testing._openai_server import FakeOpenAIServer

__all__ = ["CallCounts", "FakeOpenAIServer", "assert_calls", "count_calls"]
