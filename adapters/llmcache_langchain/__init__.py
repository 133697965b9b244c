"""llmcache as LangChain's LLM cache: one line, and LangChain's chat models and LLMs use it.

from langchain_core.globals import set_llm_cache
import llmcache, llmcache_langchain

cache = llmcache.Cache(workspace="acme")
set_llm_cache(llmcache_langchain.LangChainCache(cache, namespace="research"))

Entries are keyed by LangChain's exact prompt and `llm_string`, signed and encrypted per
workspace, stored as LangChain's own JSON serialisation (never pickle), and every hit counts
the money and time it saved in the ledger. Identical concurrent calls (threads or tasks)
make one request. `stream()` never consults a LangChain cache.
"""

from __future__ import annotations

from ._cache import LangChainCache

__all__ = ["LangChainCache"]
