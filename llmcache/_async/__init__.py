"""The async source of the call flow; `scripts/unasync.py` writes `llmcache._sync` from it."""
