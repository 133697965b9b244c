"""The sync call flow, written by `scripts/unasync.py` from `llmcache._async` (do not edit)."""
