"""Test and demo helpers shipped with llmcache."""

from llmcache.testing._openai_server import FakeOpenAIServer

__all__ = ["FakeOpenAIServer"]
