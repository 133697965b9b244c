"""`python -m llmcache` runs the command line."""

from llmcache._cli import main

main()
